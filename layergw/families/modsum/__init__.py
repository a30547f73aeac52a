"""The modular-sum family: the paper's validation transformers (``model.py``), their training
(``training.py``), checkpoints (``checkpoint.py``) and the loaded model the workflows use
(``adapter.py``). Checkpoints are ``builtin:<id>`` (shipped in ``layergw/assets/modsum``) or a
path to ``<id>.safetensors`` with ``<id>.json`` beside it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from typing import Any

from layergw.families.base import Ablation, Family, LoadedModel, Metrics, weights_path

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "assets" / "modsum"


def builtin_checkpoints() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.safetensors"))


class ModSumFamily(Family):
    name = "modsum"
    recipes = {"train": "end to end or layer-wise, the paper's full-batch AdamW (params: ModSumTrainSpec)"}

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

    def train(self, recipe: str | None, job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
        from layergw.families.modsum.training import recipe as train_recipe

        self.recipe_name(recipe)
        train_recipe(job_id, params, seed, out, device)

    def ablate(self, model: Any, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
        from layergw.families.modsum.ablation import ablate

        ablation.check(model.n_blocks, "modsum ablation")
        return ablate(model, ablation, params, device, workdir=workdir)

    def reference(self, model: Any, params: dict, device: str) -> Metrics | None:
        from layergw.families.modsum.ablation import reference

        return reference(model, params, device)

"""The generic torch family: any ``nn.Module`` from a factory, points and blocks by module name,
on images, texts or tensors (``adapter.py``); prune and freeze where its blocks allow
(``ablation.py``). Checkpoints are a ``.safetensors`` state dict or ``random:<seed>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from layergw.families.base import Ablation, Family, LoadedModel, Metrics, content_hash


class TorchFamily(Family):
    name = "torch"

    def fingerprint(self, checkpoint: str) -> str:
        if checkpoint.startswith("random:"):
            return checkpoint
        from layergw.families.base import weights_path

        return content_hash(weights_path(checkpoint, "torch checkpoint", "a .safetensors state dict or random:<seed>"))

    def load(self, checkpoint: str, *, factory: str, blocks: str, kwargs: dict | None = None,
             points: list[str] | None = None, inputs: dict | None = None, pooling: str = "flatten",
             batch_size: int = 64, max_length: int = 64, tokenizer: str | None = None) -> LoadedModel:
        """See :mod:`layergw.families.torch.adapter`."""
        from layergw.families.torch.adapter import load

        return load(checkpoint, factory=factory, blocks=blocks, kwargs=kwargs, points=points, inputs=inputs,
                    pooling=pooling, batch_size=batch_size, max_length=max_length, tokenizer=tokenizer)

    def ablate(self, model: Any, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
        from layergw.families.torch.ablation import ablate

        ablation.check(model.n_blocks, "torch ablation")
        return ablate(model, ablation, params, device, workdir=workdir)

    def reference(self, model: Any, params: dict, device: str) -> Metrics | None:
        from layergw.families.torch.ablation import reference

        return reference(model, params, device)

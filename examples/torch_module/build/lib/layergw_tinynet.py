"""A model family as a plugin: installing this package (``pip install examples/torch_module``)
registers ``tinynet`` in the ``layergw.families`` entry-point group, so the driver and every
Ray worker where it is installed find it by name:

    models:
      - {id: tiny, family: tinynet, checkpoint: "random:0", params: {depth: 4}}
"""
from __future__ import annotations

from typing import Any

from layergw.families.torch import TorchFamily


class TinyNetFamily(TorchFamily):
    """The network of ``tinynet.py`` on scikit-learn's digits, through the generic torch family."""

    name = "tinynet"

    def load(self, checkpoint: str, *, width: int = 32, depth: int = 4, points: list[str] | None = None,
             inputs: dict | None = None, pooling: str = "flatten", batch_size: int = 64) -> Any:
        return super().load(checkpoint, factory="tinynet:build", blocks="blocks",
                            kwargs={"width": width, "depth": depth}, points=points,
                            inputs=inputs or {"kind": "images", "source": "digits", "split": "test", "size": 16},
                            pooling=pooling, batch_size=batch_size)

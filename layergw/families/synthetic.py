"""A synthetic model: as many representation points as asked for, with known groups, at no cost.

It exists to size a study before a real one (``layergw bench scale``): a cluster's scheduler,
the driver, the store's listings, grouping and the report meet 948 points (449k pairs) the way
they would meet every Table-2 point of a 12-block model, while extraction and each comparison
stay cheap. ``checkpoint`` is ``random:<seed>``. The points fall into ``groups`` consecutive
groups of equal size; each group has a latent code of the inputs (``dim`` wide), and each of its
points is that code under a fixed random rotation plus ``noise``, so points of one group are
near-isometric and points of different groups are not. No torch.
"""
from __future__ import annotations

import numpy as np

from layergw.families.base import Family
from layergw.points import RepPoint


class SyntheticModel:
    """The loaded synthetic model (see the module docstring)."""

    def __init__(self, seed: int, points: int, groups: int, dim: int, inputs: int, noise: float) -> None:
        self.seed, self.n_points, self.groups, self.dim, self.inputs, self.noise = seed, points, groups, dim, inputs, noise
        self._points = [RepPoint(f"p{k:05d}", f"G{self.group_of(k) + 1} p{k}", k, f"p{k:05d}",
                                 block=self.group_of(k)) for k in range(points)]

    def group_of(self, k: int) -> int:
        return k * self.groups // self.n_points

    def points(self) -> list[RepPoint]:
        return list(self._points)

    def n_inputs(self) -> int:
        return self.inputs

    def splits(self) -> dict[str, np.ndarray]:
        return {}

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu") -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.inputs):
            raise ValueError(f"indices must lie in 0..{self.inputs - 1}, got {indices.min()}..{indices.max()}")
        codes = np.random.default_rng([self.seed, 0]).standard_normal((self.groups, self.inputs, self.dim))
        out = {}
        for p in points:
            rng = np.random.default_rng([self.seed, 1, p.index])
            rotation, _ = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
            noise = self.noise * np.random.default_rng([self.seed, 2, p.index]).standard_normal((self.inputs, self.dim))
            out[p.name] = ((codes[self.group_of(p.index)] @ rotation + noise)[indices]).astype(np.float32)
        return out

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def describe(self) -> dict:
        return {"family": "synthetic", "seed": self.seed, "points": self.n_points, "groups": self.groups,
                "dim": self.dim, "inputs": self.inputs, "noise": self.noise, "metrics": None}

    @property
    def n_blocks(self) -> int:
        return self.groups

    def depth(self, point: RepPoint) -> float:
        return float(self.group_of(point.index)) + 0.5

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        raise ValueError("the synthetic family has no residual stream to drop blocks from")


class SyntheticFamily(Family):
    name = "synthetic"

    def fingerprint(self, checkpoint: str) -> str:
        return checkpoint

    def load(self, checkpoint: str, *, points: int = 93, groups: int = 4, dim: int = 8, inputs: int = 1024,
             noise: float = 0.1) -> SyntheticModel:
        """``random:<seed>``: ``points`` points in ``groups`` groups, ``dim`` features over ``inputs`` inputs."""
        if not (isinstance(checkpoint, str) and checkpoint.startswith("random:") and checkpoint[7:].isdigit()):
            raise ValueError(f"checkpoint must be 'random:<seed>' for the synthetic family, got {checkpoint!r}")
        for name, value, least in (("points", points, 2), ("groups", groups, 1), ("dim", dim, 1), ("inputs", inputs, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"params.{name} must be an integer >= {least}, got {value!r}")
        if groups > points:
            raise ValueError(f"params.groups must be <= params.points ({points}), got {groups}")
        if not (isinstance(noise, (int, float)) and noise >= 0):
            raise ValueError(f"params.noise must be a number >= 0, got {noise!r}")
        return SyntheticModel(int(checkpoint[7:]), points, groups, dim, inputs, float(noise))


"""What the pipeline needs from a model, whatever its family."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from layergw.models.points import RepPoint


class ModelAdapter(Protocol):
    """A loaded model that can name its points, draw probes and extract representations."""

    def points(self) -> list[RepPoint]: ...

    def n_inputs(self) -> int:
        """How many inputs the probe set is drawn from."""
        ...

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Point name -> (len(indices), d) float32 for the chosen inputs."""
        ...

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Known target name -> (len(indices), classes) one-hot float32; empty when none."""
        ...

    def describe(self) -> dict:
        """JSON-able facts recorded with the run (config, training record)."""
        ...

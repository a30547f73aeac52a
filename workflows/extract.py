"""Extraction stage: one Ray task per model writes every point's (n, d) float32 to the store.

The inputs stream through the model ``STREAM_INPUTS`` at a time and each point's rows are
appended to a local file, copied to the store in chunks at the end, so a task's memory holds
one batch, not the probe set.

The model's manifest (``reps/<model>/done.json``) is written last, so its presence means
the model is complete and a rerun skips it.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray

from layergw import layout
from workflows.config import InputsSpec, ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PointRow:
    """One extracted representation point (a row of POINTS)."""

    model: str
    layer: str
    layer_index: int
    display: str
    block: int
    role: str
    dim: int
    depth: float | None = None  # where the point sits in blocks (LoadedModel.depth)
    constant: bool = False  # the same vector for every input: left out of the grouping


@dataclass(frozen=True)
class Manifest:
    """What the extraction of one model produced: its points, n, targets and the model's facts."""

    model: str
    n: int
    inputs_seed: int
    inputs_split: str
    points: tuple[PointRow, ...]
    targets: tuple[str, ...]
    device: str
    seconds: float
    describe: dict[str, Any] = field(default_factory=dict)
    n_blocks: int | None = None

    @property
    def names(self) -> list[str]:
        return [p.layer for p in self.points]

    @property
    def displays(self) -> dict[int, str]:
        return {p.layer_index: p.display for p in self.points}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Manifest:
        d = dict(d)
        d["inputs_seed"] = d.pop("inputs_seed", d.pop("probe_seed", 0))
        d.setdefault("inputs_split", "all")
        d.pop("skipped", None)
        d["points"] = tuple(PointRow(**p) for p in d["points"])
        d["targets"] = tuple(d["targets"])
        return cls(**d)


#: inputs run through a model at a time: a task holds one batch of every point, never all n
STREAM_INPUTS = 2048


def stream_points(model, indices, points: list, device: str, folder: Path, model_id: str,
                  batch: int | None = None) -> tuple[list[int], list[bool]]:
    """Run the inputs through ``model`` ``batch`` at a time, appending each point's rows to
    ``folder/<k>.npy`` as they come, so memory does not grow with the number of inputs. The
    whole array's shape is checked once and its values batch by batch (no NaN or Inf);
    returns each point's width and whether it is constant (every row equal to the first, to a
    relative 1e-6: a causal model's embedding read at an end token that every text shares)."""
    import numpy as np

    from layergw import measures

    n, batch = len(indices), batch or STREAM_INPUTS
    if n == 0:
        raise ValueError(f"model {model_id!r}: no inputs to extract")
    files: dict[int, Any] = {}
    kinds: dict[int, tuple] = {}
    first: dict[int, Any] = {}
    constant: dict[int, bool] = {}
    try:
        for start in range(0, n, batch):
            rows = len(indices[start:start + batch])
            reps = model.extract(indices[start:start + batch], points, device=device)
            for k, p in enumerate(points):
                X = np.ascontiguousarray(reps[p.name])
                label = f"model {model_id!r}, point {p.name!r}"
                if k not in files:
                    whole = np.broadcast_to(X[:1], (n, X.shape[1])) if X.ndim == 2 and len(X) else X
                    measures.check_shape(whole, label)
                    kinds[k] = (X.shape[1], X.dtype)
                    files[k] = (folder / f"{k}.npy").open("wb")
                    np.lib.format.write_array_header_1_0(files[k], {
                        "descr": np.lib.format.dtype_to_descr(X.dtype), "fortran_order": False,
                        "shape": (n, X.shape[1])})
                if X.ndim != 2 or (X.shape[1], X.dtype) != kinds[k] or X.shape[0] != rows:
                    raise ValueError(f"{label}: inputs {start}..{start + rows - 1} gave shape {X.shape} {X.dtype}, "
                                     f"expected ({rows}, {kinds[k][0]}) {kinds[k][1]}")
                measures.check_finite(X, label)
                if k not in first:
                    first[k], constant[k] = X[0].astype(np.float64), True
                if constant[k]:
                    scale = 1e-6 * (1.0 + float(np.abs(first[k]).max(initial=0.0)))
                    constant[k] = bool(np.abs(X - first[k]).max(initial=0.0) <= scale)
                files[k].write(X.tobytes())
    finally:
        for f in files.values():
            f.close()
    return [kinds[k][0] for k in range(len(points))], [constant[k] and n > 1 for k in range(len(points))]


@ray.remote(num_cpus=1)
def extract_model(spec: ModelSpec, inputs: InputsSpec, store) -> tuple[Manifest, bool]:
    """Extract, validate and store one model's representations and targets; return its
    manifest and whether it was already there.

    Points are numbered by their position among the selected points (depth order), which
    is the model's own numbering when all points are taken.
    """
    from layergw import families
    from layergw.inputs import input_indices, split_pool
    from layergw.points import select_points, with_pooling
    from layergw.torchkit.device import resolve_device

    if store.exists(layout.extracted(spec.id)):
        return Manifest.from_json(store.read_json(layout.extracted(spec.id))), True
    t0 = time.perf_counter()
    device = resolve_device("auto")
    family = families.get(spec.family)
    checkpoint = spec.checkpoint
    with tempfile.TemporaryDirectory(prefix="layergw-ckpt-") as tmp:
        if checkpoint.startswith("train:"):
            from workflows.train import local_checkpoint

            checkpoint = local_checkpoint(store, checkpoint, family, Path(tmp))
        model = family.load(checkpoint, **spec.params)
    points = with_pooling(select_points(model.points(), spec.points, model=spec.id), spec.pooling)
    pool = split_pool(model.splits(), inputs.split, f"model {spec.id!r}")
    indices = input_indices(model.n_inputs(), inputs.n, inputs.seed, pool)
    rows = []
    with tempfile.TemporaryDirectory(prefix="layergw-reps-") as tmp:
        widths, constant = stream_points(model, indices, points, device, Path(tmp), spec.id)
        for k, (p, d) in enumerate(zip(points, widths)):
            store.write_file(layout.rep(spec.id, k), Path(tmp) / f"{k}.npy")
            rows.append(PointRow(spec.id, p.name, k, p.display, p.block if p.block is not None else -1, p.role,
                                 d, float(model.depth(p)), constant[k]))
    if any(constant):
        log.info("model %s: %s constant over the %d inputs (left out of the grouping)", spec.id,
                 ", ".join(p.name for p, c in zip(points, constant) if c), len(indices))
    targets = model.targets(indices) if spec.targets else {}
    for name, Y in targets.items():
        store.write_array(layout.target_rep(spec.id, name), Y)
    manifest = Manifest(spec.id, int(len(indices)), inputs.seed, inputs.split, tuple(rows), tuple(sorted(targets)), device,
                        time.perf_counter() - t0, model.describe(), model.n_blocks)
    store.write_json(layout.extracted(spec.id), manifest.to_json())
    return manifest, False


def run_extract(specs: list[ModelSpec], inputs: InputsSpec, store, num_gpus: float = 0.0) -> dict[str, Manifest]:
    """Extract every model in parallel; model id -> manifest."""
    from workflows.progress import Progress

    task = extract_model.options(num_gpus=num_gpus) if num_gpus else extract_model
    refs = {s.id: task.remote(s, inputs, store) for s in specs}
    progress = Progress("extract", len(refs), 0, "models", interval=30.0)
    out = {}
    for mid, ref in refs.items():
        out[mid], reused = ray.get(ref)
        state = "already extracted, reused" if reused else f"extracted in {out[mid].seconds:.1f}s"
        log.info("%s: %d points, n=%d, %s", mid, len(out[mid].points), out[mid].n, state)
        progress.update()
    return out

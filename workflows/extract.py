"""Extraction stage: one Ray task per model writes every point's (n, d) float32 to the store.

The inputs stream through the model ``STREAM_INPUTS`` at a time and each point's rows are
appended to a local file, copied to the store in chunks at the end, so a task's memory holds
one batch, not the probe set.

The model's manifest (``reps/<model>/done.json``) is written last, so its presence means
the model is complete and a rerun skips it.

With ``ray.extract_shards`` above 1, a model's inputs are cut into that many ranges, one task
each (each loads the model): a shard writes its rows of every point to ``reps/<model>/shards/``
and its record last (a rerun skips finished shards), then one task assembles each point from
the shards' rows, one shard's rows of one point in memory at a time, and writes the manifest.
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


def _load(spec: ModelSpec, inputs: InputsSpec, store):
    """(model, selected points, input indices) of a model spec, as every extraction task sees them."""
    from layergw import families
    from layergw.inputs import input_indices, split_pool
    from layergw.points import select_points, with_pooling

    family = families.get(spec.family)
    checkpoint = spec.checkpoint
    with tempfile.TemporaryDirectory(prefix="layergw-ckpt-") as tmp:
        if checkpoint.startswith("train:"):
            from workflows.train import local_checkpoint

            checkpoint = local_checkpoint(store, checkpoint, family, Path(tmp))
        model = family.load(checkpoint, **spec.params)
    points = with_pooling(select_points(model.points(), spec.points, model=spec.id), spec.pooling)
    pool = split_pool(model.splits(), inputs.split, f"model {spec.id!r}")
    return model, points, input_indices(model.n_inputs(), inputs.n, inputs.seed, pool)


def _point_rows(model_id: str, model, points: list, widths: list[int], constant: list[bool]) -> list[PointRow]:
    return [PointRow(model_id, p.name, k, p.display, p.block if p.block is not None else -1, p.role, d,
                     float(model.depth(p)), c) for k, (p, d, c) in enumerate(zip(points, widths, constant))]


def _finish(spec: ModelSpec, inputs: InputsSpec, store, rows: list[PointRow], n: int, targets: tuple[str, ...],
            device: str, seconds: float, describe: dict, n_blocks: int | None) -> Manifest:
    if any(r.constant for r in rows):
        log.info("model %s: %s constant over the %d inputs (left out of the grouping)", spec.id,
                 ", ".join(r.layer for r in rows if r.constant), n)
    manifest = Manifest(spec.id, n, inputs.seed, inputs.split, tuple(rows), tuple(sorted(targets)), device, seconds,
                        describe, n_blocks)
    store.write_json(layout.extracted(spec.id), manifest.to_json())
    return manifest


@ray.remote(num_cpus=1)
def extract_model(spec: ModelSpec, inputs: InputsSpec, store) -> tuple[Manifest, bool]:
    """Extract, validate and store one model's representations and targets; return its
    manifest and whether it was already there.

    Points are numbered by their position among the selected points (depth order), which
    is the model's own numbering when all points are taken.
    """
    from layergw.torchkit.device import resolve_device

    if store.exists(layout.extracted(spec.id)):
        return Manifest.from_json(store.read_json(layout.extracted(spec.id))), True
    t0 = time.perf_counter()
    device = resolve_device("auto")
    model, points, indices = _load(spec, inputs, store)
    with tempfile.TemporaryDirectory(prefix="layergw-reps-") as tmp:
        widths, constant = stream_points(model, indices, points, device, Path(tmp), spec.id)
        for k in range(len(points)):
            store.write_file(layout.rep(spec.id, k), Path(tmp) / f"{k}.npy")
    targets = model.targets(indices) if spec.targets else {}
    for name, Y in targets.items():
        store.write_array(layout.target_rep(spec.id, name), Y)
    return _finish(spec, inputs, store, _point_rows(spec.id, model, points, widths, constant), int(len(indices)),
                   tuple(targets), device, time.perf_counter() - t0, model.describe(), model.n_blocks), False


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """The input ranges [lo, hi) of ``shards`` shards of ``n`` inputs, as equal as can be (no empty one)."""
    shards = max(1, min(shards, n))
    return [(s * n // shards, (s + 1) * n // shards) for s in range(shards)]


@ray.remote(num_cpus=1)
def extract_shard(spec: ModelSpec, inputs: InputsSpec, store, shard: int, shards: int) -> dict:
    """One input range of a model: its rows of every point under ``reps/<model>/shards/``; shard 0
    also writes the targets of all inputs. Returns (and writes last) the shard's record."""
    from layergw.torchkit.device import resolve_device

    if store.exists(layout.shard_done(spec.id, shard)):
        return store.read_json(layout.shard_done(spec.id, shard))
    t0 = time.perf_counter()
    device = resolve_device("auto")
    model, points, indices = _load(spec, inputs, store)
    lo, hi = shard_bounds(len(indices), shards)[shard]
    with tempfile.TemporaryDirectory(prefix="layergw-reps-") as tmp:
        widths, constant = stream_points(model, indices[lo:hi], points, device, Path(tmp), spec.id)
        for k in range(len(points)):
            store.write_file(layout.rep_shard(spec.id, k, shard), Path(tmp) / f"{k}.npy")
    targets: dict = {}
    if shard == 0 and spec.targets:
        targets = model.targets(indices)
        for name, Y in targets.items():
            store.write_array(layout.target_rep(spec.id, name), Y)
    rows = _point_rows(spec.id, model, points, widths, constant)
    record = {"shard": shard, "lo": lo, "hi": hi, "n": int(len(indices)), "rows": [asdict(r) for r in rows],
              "node": ray.get_runtime_context().get_node_id(),
              "targets": sorted(targets), "device": device, "seconds": time.perf_counter() - t0,
              "describe": model.describe(), "n_blocks": model.n_blocks}
    store.write_json(layout.shard_done(spec.id, shard), record)
    return record


@ray.remote(num_cpus=1)
def assemble_model(spec: ModelSpec, inputs: InputsSpec, store, *records: dict) -> tuple[Manifest, bool]:
    """Each point's rows from the shards in input order, one shard's rows of one point in memory
    at a time; then the manifest, and the shard files are removed."""
    import numpy as np

    if store.exists(layout.extracted(spec.id)):
        return Manifest.from_json(store.read_json(layout.extracted(spec.id))), True
    records = sorted(records, key=lambda r: r["shard"])
    n = records[0]["n"]
    if [(r["lo"], r["hi"]) for r in records] != shard_bounds(n, len(records)):
        raise ValueError(f"model {spec.id!r}: the shards' input ranges {[(r['lo'], r['hi']) for r in records]} "
                         f"do not cover 0..{n} in order")
    first_rows = [PointRow(**r) for r in records[0]["rows"]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="layergw-assemble-") as tmp:
        for k, row in enumerate(first_rows):
            dims = {rec["rows"][k]["dim"] for rec in records}
            if len(dims) > 1:
                raise ValueError(f"model {spec.id!r}, point {row.layer!r}: the shards gave widths {sorted(dims)}")
            constant = all(rec["rows"][k]["constant"] or rec["hi"] - rec["lo"] == 1 for rec in records)
            path = Path(tmp) / f"{k}.npy"
            dtype, ref = None, None
            with path.open("wb") as out:
                for s, rec in enumerate(records):
                    X = store.read_array(layout.rep_shard(spec.id, k, s))
                    if X.shape != (rec["hi"] - rec["lo"], row.dim):
                        raise ValueError(f"model {spec.id!r}, point {row.layer!r}: shard {s} holds {X.shape}, "
                                         f"expected ({rec['hi'] - rec['lo']}, {row.dim})")
                    if dtype is not None and X.dtype != dtype:
                        raise ValueError(f"model {spec.id!r}, point {row.layer!r}: shard {s} holds {X.dtype}, "
                                         f"shard 0 {dtype}")
                    if dtype is None:
                        dtype = X.dtype
                        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                                   "fortran_order": False, "shape": (n, row.dim)})
                    if constant:
                        ref = np.asarray(X[0], dtype=np.float64) if ref is None else ref
                        scale = 1e-6 * (1.0 + float(np.abs(ref).max(initial=0.0)))
                        constant = bool(np.abs(X - ref).max(initial=0.0) <= scale)
                    out.write(np.ascontiguousarray(X).tobytes())
            store.write_file(layout.rep(spec.id, k), path)
            rows.append(PointRow(**{**asdict(row), "constant": constant and n > 1}))
    describe = {**records[0]["describe"], "extract_shards": [{k: r[k] for k in ("shard", "lo", "hi", "node", "seconds")}
                                                             for r in records]}
    manifest = _finish(spec, inputs, store, rows, n, tuple(records[0]["targets"]), records[0]["device"],
                       sum(r["seconds"] for r in records), describe, records[0]["n_blocks"])
    for rec in records:
        for k in range(len(first_rows)):
            store.delete(layout.rep_shard(spec.id, k, rec["shard"]))
        store.delete(layout.shard_done(spec.id, rec["shard"]))
    return manifest, False


def run_extract(specs: list[ModelSpec], inputs: InputsSpec, store, num_gpus: float = 0.0,
                shards: int = 1) -> dict[str, Manifest]:
    """Extract every model in parallel (each in ``shards`` input ranges); model id -> manifest."""
    from workflows.progress import Progress

    def task(fn):
        return fn.options(num_gpus=num_gpus) if num_gpus else fn

    refs = {}
    for s in specs:
        if shards == 1 or store.exists(layout.extracted(s.id)):
            refs[s.id] = task(extract_model).remote(s, inputs, store)
        else:
            parts = [task(extract_shard).remote(s, inputs, store, k, shards) for k in range(shards)]
            refs[s.id] = assemble_model.remote(s, inputs, store, *parts)
    progress = Progress("extract", len(refs), 0, "models", interval=30.0)
    out = {}
    for mid, ref in refs.items():
        out[mid], reused = ray.get(ref)
        state = "already extracted, reused" if reused else f"extracted in {out[mid].seconds:.1f}s"
        log.info("%s: %d points, n=%d, %s", mid, len(out[mid].points), out[mid].n, state)
        progress.update()
    return out

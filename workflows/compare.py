"""Compare stage: the upper triangle of each model's layer grid, in tiles, on Ray.

Each layer's geometry is prepared once per measure by a Ray task and shared by object
reference with every tile that needs it. A tile task compares its pairs with one BLAS
thread and writes its rows to one tile file (``layergw.layout.tile``) at once; a tile
file that exists is finished, so reruns and resumed runs reuse it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import ray

from layergw import layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    i0: int
    j0: int
    pairs: tuple[tuple[int, int], ...]

    @property
    def layers(self) -> list[int]:
        return sorted({i for p in self.pairs for i in p})


def make_tiles(n_layers: int, size: int) -> list[Tile]:
    """Cut the pairs i < j of an n_layers grid into size x size blocks; the diagonal is not a pair."""
    if size < 1:
        raise ValueError(f"tile size must be >= 1, got {size}")
    tiles = []
    for i0 in range(0, n_layers, size):
        for j0 in range(i0, n_layers, size):
            pairs = tuple((i, j) for i in range(i0, min(i0 + size, n_layers))
                          for j in range(max(j0, i + 1), min(j0 + size, n_layers)))
            if pairs:
                tiles.append(Tile(i0, j0, pairs))
    return tiles


def make_cross_tiles(n_a: int, n_b: int, size: int) -> list[Tile]:
    """Cut the full n_a x n_b grid of (layer of a, layer of b) pairs into size x size blocks."""
    if size < 1:
        raise ValueError(f"tile size must be >= 1, got {size}")
    return [Tile(i0, j0, tuple((i, j) for i in range(i0, min(i0 + size, n_a)) for j in range(j0, min(j0 + size, n_b))))
            for i0 in range(0, n_a, size) for j0 in range(0, n_b, size)]


@dataclass(frozen=True)
class Side:
    """One side of a tile's pairs: the model, the names of its layers in the tile (layer index ->
    name; not every layer's, so a task's arguments do not grow with the model) and which layers'
    geometry the task receives (in this order)."""

    model: str
    seed: int
    checkpoint: str
    names: dict[int, str]
    layer_ids: tuple[int, ...]


@dataclass(frozen=True)
class TileJob:
    """Everything a tile task needs besides the geometry: where to write, which pairs (i of
    side a, j of side b), the measure and what every row records."""

    path: str
    pairs: tuple[tuple[int, int], ...]
    a: Side
    b: Side
    measure: str
    params: dict
    n: int
    study: str
    run_id: str
    config_hash: str
    code_version: str
    same_model: bool = True  # b's geometry is a's (within one model's grid)


@dataclass(frozen=True)
class PrepareFailed:
    """A layer whose geometry could not be prepared: its pairs become error rows."""

    message: str


def tile_gpus(specs, requested: float | None, cluster_gpus: float) -> dict[str, float]:
    """Measure key -> GPUs a tile task of that measure asks for: only batched measures
    (``compare_many``) use one; ``requested`` (the config's ``compare.batch_num_gpus``) or 1
    where the cluster has GPUs."""
    default = float(requested) if requested is not None else (1.0 if cluster_gpus > 0 else 0.0)
    return {s.key: default if hasattr(build_measure(s.name, dict(s.params)), "compare_many") else 0.0
            for s in specs}


def build_measure(name: str, params: dict):
    from layergw import measures

    return measures.get(name, **params)


_ONE_THREAD = False


def one_blas_thread() -> None:
    """Limit BLAS to one thread in this worker, once (threadpoolctl's scan costs milliseconds a
    call, too much to repeat per task); tasks get their parallelism from Ray."""
    global _ONE_THREAD
    if not _ONE_THREAD:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _ONE_THREAD = True


@ray.remote(num_cpus=1)
def prepare_task(store, rep_paths: list[str], name: str, params: dict) -> list:
    """The geometry of each layer in ``rep_paths``, as one object (a tile passes a chunk's
    reference, not one per layer)."""
    one_blas_thread()
    m = build_measure(name, params)
    out = []
    for path in rep_paths:
        try:
            out.append(m.prepare(store.read_array(path), label=path))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            out.append(PrepareFailed(f"prepare: {type(e).__name__}: {e}"))
    return out


def resolve(where: list[tuple[int, int]], chunks: tuple) -> list:
    """Each layer's geometry from the chunks a task received: ``where`` is (chunk, position)."""
    return [chunks[c][k] for c, k in where]


@ray.remote(num_cpus=1)
def compare_tile_task(store, job: TileJob, where: list[tuple[int, int]], *chunks) -> dict:
    """Compare every pair of one tile and write the tile's rows in one atomic file.

    ``where`` places side a's layers (``job.a.layer_ids`` order), then (for two models) side
    b's, in the geometry ``chunks`` (see :meth:`GeometryCache.refs`).
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    from layergw.results import PAIRS, table

    one_blas_thread()

    m = build_measure(job.measure, job.params)
    geoms = resolve(where, chunks)
    geom_a = dict(zip(job.a.layer_ids, geoms))
    geom_b = geom_a if job.same_model else dict(zip(job.b.layer_ids, geoms[len(job.a.layer_ids):]))
    rows, errors, t0 = [], 0, time.perf_counter()
    batched = _compare_batch(m, job.pairs, geom_a, geom_b)
    for i, j in job.pairs:
        row = {
            "study": job.study, "run_id": job.run_id,
            "model_a": job.a.model, "seed_a": job.a.seed, "checkpoint_a": job.a.checkpoint,
            "layer_a": job.a.names[i], "layer_a_index": i,
            "model_b": job.b.model, "seed_b": job.b.seed, "checkpoint_b": job.b.checkpoint,
            "layer_b": job.b.names[j], "layer_b_index": j,
            "measure": job.measure, "params": m.params_json, "kind": m.kind,
            "value": None, "n_samples": job.n, "iterations": None, "converged": None,
            "seconds": None, "error": None, "config_hash": job.config_hash, "code_version": job.code_version,
            "spread": None,
        }
        failed = [g.message for g in (geom_a[i], geom_b[j]) if isinstance(g, PrepareFailed)]
        if failed:
            row["error"] = "; ".join(failed)
        else:
            try:
                c = batched[(i, j)] if (i, j) in batched else m.compare(geom_a[i], geom_b[j])
                row.update(value=float(c.value), iterations=c.iterations, converged=bool(c.converged),
                           seconds=float(c.seconds), spread=c.spread)
                if not np.isfinite(c.value):
                    row.update(value=None, error=f"non-finite value {c.value}")
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
                row["error"] = f"{type(e).__name__}: {e}"
        errors += row["error"] is not None
        rows.append(row)
    compared = time.perf_counter() - t0
    store.write_table(job.path, table(rows, PAIRS))
    return {"path": job.path, "pairs": len(rows), "errors": errors, "seconds": compared,
            "task_seconds": time.perf_counter() - started, "task_cpu_seconds": time.thread_time() - cpu_started}


def _compare_batch(m, pairs, geom_a: dict, geom_b: dict) -> dict:
    """A batched measure's (``compare_many``) Comparisons of a tile's comparable pairs in one
    call; empty for other measures, or where the batch fails, so each pair is compared (and
    its error recorded) alone."""
    if not hasattr(m, "compare_many"):
        return {}
    ok = [(i, j) for i, j in pairs if not isinstance(geom_a[i], PrepareFailed) and not isinstance(geom_b[j], PrepareFailed)]
    try:
        results = m.compare_many([(geom_a[i], geom_b[j]) for i, j in ok])
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
        log.warning("%s: the batch of %d pairs failed (%s); comparing them one by one", m.name, len(ok), e)
        return {}
    return {p: c for p, c in zip(ok, results) if np.isfinite(c.value)}


class GeometryCache:
    """Object references to prepared geometry: one prepare task, and one object, per chunk of
    ``chunks[measure key]`` consecutive layers of a model (a tile row's layers, so a tile passes
    one or two references); one layer a chunk for a measure without a chunk size."""

    def __init__(self, store, chunks: dict[str, int] | None = None, layers: dict[str, int] | None = None) -> None:
        self.store = store
        self.chunks, self.layers = dict(chunks or {}), dict(layers or {})
        self.refs: dict[tuple[str, str, int], ray.ObjectRef] = {}
        self.prepared = 0
        self.tasks = 0
        self.peak_refs = 0

    def _chunk(self, model: str, measure, key: str, index: int) -> tuple[int, ray.ObjectRef]:
        side = self.chunks.get(key, 1) if model in self.layers else 1
        start = index - index % side
        ref_key = (model, key, start)
        if ref_key not in self.refs:
            layers = range(start, min(start + side, self.layers.get(model, start + 1)))
            self.refs[ref_key] = prepare_task.remote(self.store, [layout.rep(model, k) for k in layers], measure.name,
                                                     dict(measure.params))
            self.prepared += len(layers)
            self.tasks += 1
            self.peak_refs = max(self.peak_refs, len(self.refs))
        return start, self.refs[ref_key]

    def refs_for(self, model: str, measure, layer_ids, offset: int = 0) -> tuple[list, list[tuple[int, int]]]:
        """(the chunk references ``layer_ids`` need, each layer's (chunk, position)); chunk
        numbers start at ``offset`` (for a second side's chunks after the first's)."""
        key = measure.key  # resolves the measure's parameters: once per call, not per layer
        refs: list = []
        slot: dict[int, int] = {}
        where = []
        for k in layer_ids:
            start, ref = self._chunk(model, measure, key, k)
            if start not in slot:
                slot[start] = offset + len(refs)
                refs.append(ref)
            where.append((slot[start], k - start))
        return refs, where

    def drop(self, model: str, measure_key: str) -> None:
        for key in [k for k in self.refs if k[0] == model and k[1] == measure_key]:
            del self.refs[key]


@dataclass
class WorkItem:
    """One Ray task to run: its group (for freeing geometry), size, and how to submit it."""

    group: tuple[str, str]
    size: int
    submit: Callable[[], ray.ObjectRef]
    label: str
    on_done: Callable[[Any], None] = field(default=lambda result: None)
    first: bool = False  # runs before the other items of its group
    also_uses: tuple[tuple[str, str], ...] = ()  # other groups whose geometry it needs (cross tiles)


@dataclass
class Usage:
    """What the finished tasks report of their time: inside the task (``task_seconds``) and
    in the comparisons themselves (``compare_seconds``); the rest of a task is its overhead
    (measure set-up, writing the tile)."""

    tasks: int = 0
    task_seconds: float = 0.0
    task_cpu_seconds: float = 0.0
    compare_seconds: float = 0.0
    peak_in_flight: int = 0

    def add(self, result: Any) -> None:
        if isinstance(result, dict) and "task_seconds" in result:
            self.tasks += 1
            self.task_seconds += float(result["task_seconds"])
            self.task_cpu_seconds += float(result.get("task_cpu_seconds", 0.0))
            self.compare_seconds += float(result["seconds"])

    def summary(self, wall_seconds: float, cpus: float) -> dict:
        """The stage's figures: busy share = task time / (cpus x wall time); overhead share =
        the part of task time outside the comparisons."""
        return {"tasks": self.tasks, "task_seconds": round(self.task_seconds, 3),
                "task_cpu_seconds": round(self.task_cpu_seconds, 3),
                "compare_seconds": round(self.compare_seconds, 3), "wall_seconds": round(wall_seconds, 3),
                "cpus": cpus,
                "peak_in_flight": self.peak_in_flight,
                "busy_share": round(self.task_seconds / (cpus * wall_seconds), 4) if wall_seconds > 0 and cpus else None,
                "overhead_share": round(1 - self.compare_seconds / self.task_seconds, 4) if self.task_seconds else None}


def run_items(items: list[WorkItem], cache: GeometryCache, max_in_flight: int,
              progress: Callable[[int], None] = lambda n: None, usage: Usage | None = None) -> list[str]:
    """Submit items group by group with at most max_in_flight running, freeing a group's
    geometry once its last item is done; return the failures (after finishing the rest)."""
    items = sorted(items, key=lambda it: (it.group, not it.first))
    remaining: dict[tuple[str, str], int] = {}
    for it in items:
        for g in (it.group, *it.also_uses):
            remaining[g] = remaining.get(g, 0) + 1
    pending = list(reversed(items))
    running: dict[ray.ObjectRef, WorkItem] = {}
    failures: list[str] = []
    while pending or running:
        while pending and len(running) < max_in_flight:
            it = pending.pop()
            running[it.submit()] = it
        if usage is not None:
            usage.peak_in_flight = max(usage.peak_in_flight, len(running))
        done, _ = ray.wait(list(running), num_returns=1, timeout=2.0)  # timeout: Ctrl-C stays responsive
        for ref in done:
            it = running.pop(ref)
            try:
                result = ray.get(ref)
                if usage is not None:
                    usage.add(result)
                it.on_done(result)
            except ray.exceptions.RayError as e:
                cause = getattr(e, "cause", None) or e
                failures.append(f"{it.label}: {type(cause).__name__}: {cause}")
                log.error("%s failed: %s", it.label, cause)
            progress(it.size)
            for g in (it.group, *it.also_uses):
                remaining[g] -= 1
                if remaining[g] == 0:
                    cache.drop(*g)
    return failures

"""Compare stage: the upper triangle of each model's layer grid, in tiles, on Ray.

Each layer's geometry is prepared once per measure by a Ray task and shared by object
reference with every tile that needs it. A tile task compares its pairs with one BLAS
thread and writes its rows to one tile file (``layergw.layout.tile``) at once; a tile
file that exists is finished, so reruns and resumed runs reuse it.
"""
from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import ray

from layergw import layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """A block of pairs: layers i0 <= i < i1 of side a against j0 <= j < j1 of side b, only
    i < j when ``upper`` (one model's grid). Four numbers, so a task's arguments stay small;
    the pairs are spelled out where they are compared."""

    i0: int
    j0: int
    i1: int
    j1: int
    upper: bool = True

    def _first_j(self, i: int) -> int:
        return max(self.j0, i + 1) if self.upper else self.j0

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((i, j) for i in range(self.i0, self.i1) for j in range(self._first_j(i), self.j1))

    @property
    def count(self) -> int:
        return sum(max(0, self.j1 - self._first_j(i)) for i in range(self.i0, self.i1))

    @property
    def rows(self) -> list[int]:
        """Side a's layers that have a pair in the tile."""
        return [i for i in range(self.i0, self.i1) if self._first_j(i) < self.j1]

    @property
    def cols(self) -> list[int]:
        """Side b's layers that have a pair in the tile."""
        return [j for j in range(self.j0, self.j1) if not self.upper or j > self.i0]

    @property
    def layers(self) -> list[int]:
        return sorted({*self.rows, *self.cols})


def make_tiles(n_layers: int, size: int) -> list[Tile]:
    """Cut the pairs i < j of an n_layers grid into size x size blocks; the diagonal is not a pair."""
    if size < 1:
        raise ValueError(f"tile size must be >= 1, got {size}")
    tiles = (Tile(i0, j0, min(i0 + size, n_layers), min(j0 + size, n_layers))
             for i0 in range(0, n_layers, size) for j0 in range(i0, n_layers, size))
    return [t for t in tiles if t.count]


def make_cross_tiles(n_a: int, n_b: int, size: int) -> list[Tile]:
    """Cut the full n_a x n_b grid of (layer of a, layer of b) pairs into size x size blocks."""
    if size < 1:
        raise ValueError(f"tile size must be >= 1, got {size}")
    return [Tile(i0, j0, min(i0 + size, n_a), min(j0 + size, n_b), upper=False)
            for i0 in range(0, n_a, size) for j0 in range(0, n_b, size)]


@dataclass(frozen=True)
class Side:
    """One side of a model's pairs: the model and the names of all its layers."""

    model: str
    seed: int
    checkpoint: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class TileContext:
    """What every tile of one grid (a model's, or two models' cross grid) and measure shares:
    where to write, the measure and what every row records. Put in Ray's object store once per
    grid, so a tile task's own arguments are its path, its block of pairs and its geometry."""

    store: Any
    measure: str
    params: dict
    n: int
    study: str
    run_id: str
    config_hash: str
    code_version: str
    a: Side
    b: Side



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
def compare_tile_task(ctx: TileContext, path: str, tile: Tile, where: list[tuple[int, int]], *chunks) -> dict:
    """Compare every pair of one tile and write the tile's rows to ``path`` in one atomic file.

    ``where`` places the tile's layers in the geometry ``chunks`` (see
    :meth:`GeometryCache.refs_for`): ``tile.layers`` for a tile of one model's grid, else
    side a's ``tile.rows`` then side b's ``tile.cols``.
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    from layergw.results import PAIRS, table

    one_blas_thread()

    m = build_measure(ctx.measure, ctx.params)
    geoms = resolve(where, chunks)
    if tile.upper:
        geom_a = geom_b = dict(zip(tile.layers, geoms))
    else:
        rows = tile.rows
        geom_a, geom_b = dict(zip(rows, geoms)), dict(zip(tile.cols, geoms[len(rows):]))
    pairs = tile.pairs
    a, b = ctx.a, ctx.b
    rows_out, errors, t0 = [], 0, time.perf_counter()
    batched = _compare_batch(m, pairs, geom_a, geom_b)
    for i, j in pairs:
        row = {
            "study": ctx.study, "run_id": ctx.run_id,
            "model_a": a.model, "seed_a": a.seed, "checkpoint_a": a.checkpoint,
            "layer_a": a.names[i], "layer_a_index": i,
            "model_b": b.model, "seed_b": b.seed, "checkpoint_b": b.checkpoint,
            "layer_b": b.names[j], "layer_b_index": j,
            "measure": ctx.measure, "params": m.params_json, "kind": m.kind,
            "value": None, "n_samples": ctx.n, "iterations": None, "converged": None,
            "seconds": None, "error": None, "config_hash": ctx.config_hash, "code_version": ctx.code_version,
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
        rows_out.append(row)
    compared = time.perf_counter() - t0
    ctx.store.write_table(path, table(rows_out, PAIRS))
    return {"path": path, "pairs": len(rows_out), "errors": errors, "seconds": compared,
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

    def refs_for(self, model: str, measure, layer_ids, offset: int = 0,
                 key: str | None = None) -> tuple[list, list[tuple[int, int]]]:
        """(the chunk references ``layer_ids`` need, each layer's (chunk, position)); chunk
        numbers start at ``offset`` (for a second side's chunks after the first's). ``key``:
        the measure's key when the caller has it (resolving it costs more than the lookup)."""
        key = key or measure.key
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
    geometry once its last item is done; return the failures (after finishing the rest).

    Each task's completion arrives on a queue (a callback on its future), so a finished task
    costs the driver the same whether 10 or 1,000 are in flight (``ray.wait`` on the running
    list costs their number, each time one finishes)."""
    items = sorted(items, key=lambda it: (it.group, not it.first))
    remaining: dict[tuple[str, str], int] = {}
    for it in items:
        for g in (it.group, *it.also_uses):
            remaining[g] = remaining.get(g, 0) + 1
    pending = list(reversed(items))
    running: dict[Any, WorkItem] = {}
    finished: queue.SimpleQueue = queue.SimpleQueue()
    failures: list[str] = []
    while pending or running:
        while pending and len(running) < max_in_flight:
            it = pending.pop()
            future = it.submit().future()
            running[future] = it
            future.add_done_callback(finished.put)
        if usage is not None:
            usage.peak_in_flight = max(usage.peak_in_flight, len(running))
        try:
            future = finished.get(timeout=2.0)  # timeout: Ctrl-C stays responsive
        except queue.Empty:
            continue
        it = running.pop(future)
        try:
            result = future.result()
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

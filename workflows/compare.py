"""Compare stage: the upper triangle of each model's layer grid, in tiles, on Ray.

Each layer's geometry is prepared once per measure by a Ray task and shared by object
reference with every tile that needs it. A tile task compares its pairs with one BLAS
thread and writes its rows to ``pairs/<model>/<measure>/tile-<i0>-<j0>.parquet`` at
once; a tile file that exists is finished, so reruns and resumed runs skip it.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import ray

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


def tile_path(model: str, measure_key: str, tile: Tile) -> str:
    return f"pairs/{model}/{measure_key}/tile-{tile.i0:04d}-{tile.j0:04d}.parquet"


def cross_tile_path(model_a: str, model_b: str, measure_key: str, tile: Tile) -> str:
    return f"cross/{model_a}/{model_b}/{measure_key}/tile-{tile.i0:04d}-{tile.j0:04d}.parquet"


@dataclass(frozen=True)
class PrepareFailed:
    """A layer whose geometry could not be prepared: its pairs become error rows."""

    message: str


def build_measure(name: str, params: dict):
    from layergw import measures

    return measures.get(name, **params)


@ray.remote(num_cpus=1)
def prepare_task(store, rep_path: str, name: str, params: dict) -> Any:
    from threadpoolctl import threadpool_limits

    X = store.read_array(rep_path)
    try:
        with threadpool_limits(limits=1):
            return build_measure(name, params).prepare(X, label=rep_path)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
        return PrepareFailed(f"prepare: {type(e).__name__}: {e}")


@ray.remote(num_cpus=1)
def compare_tile_task(store, path: str, meta: dict, pairs: list, layer_ids: list, *geoms) -> dict:
    """Compare every pair of one tile and write the tile's rows in one atomic file.

    Within one model, ``layer_ids`` index ``geoms``. For a cross tile, ``meta["b"]`` holds
    model b's id, seed, checkpoint, names and layer ids, whose geometry follows a's in ``geoms``.
    """
    from threadpoolctl import threadpool_limits

    from layergw.results import PAIRS, table

    m = build_measure(meta["measure"], meta["params"])
    geom = dict(zip(layer_ids, geoms))
    names = meta["names"]
    b = meta.get("b") or {"model": meta["model"], "seed": meta["seed"], "checkpoint": meta["checkpoint"],
                          "names": names}
    geom_b = dict(zip(b["layer_ids"], geoms[len(layer_ids):])) if "layer_ids" in b else geom
    rows, errors, t0 = [], 0, time.perf_counter()
    with threadpool_limits(limits=1):
        for i, j in pairs:
            row = {
                "study": meta["study"], "run_id": meta["run_id"],
                "model_a": meta["model"], "seed_a": meta["seed"], "checkpoint_a": meta["checkpoint"],
                "layer_a": names[i], "layer_a_index": i,
                "model_b": b["model"], "seed_b": b["seed"], "checkpoint_b": b["checkpoint"],
                "layer_b": b["names"][j], "layer_b_index": j,
                "measure": meta["measure"], "params": json.dumps(m.params(), sort_keys=True), "kind": m.kind,
                "value": None, "n_samples": meta["n"], "iterations": None, "converged": None,
                "seconds": None, "error": None, "config_hash": meta["config_hash"], "code_version": meta["code_version"],
                "spread": None,
            }
            failed = [g.message for g in (geom[i], geom_b[j]) if isinstance(g, PrepareFailed)]
            if failed:
                row["error"] = "; ".join(failed)
            else:
                try:
                    c = m.compare(geom[i], geom_b[j])
                    row.update(value=float(c.value), iterations=c.iterations, converged=bool(c.converged),
                               seconds=float(c.seconds), spread=c.spread)
                    if not np.isfinite(c.value):
                        row.update(value=None, error=f"non-finite value {c.value}")
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
                    row["error"] = f"{type(e).__name__}: {e}"
            errors += row["error"] is not None
            rows.append(row)
    store.write_table(path, table(rows, PAIRS))
    return {"path": path, "pairs": len(rows), "errors": errors, "seconds": time.perf_counter() - t0}


class GeometryCache:
    """Object references to prepared geometry, one prepare task per (model, measure, layer)."""

    def __init__(self, store) -> None:
        self.store = store
        self.refs: dict[tuple[str, str, int], ray.ObjectRef] = {}
        self.prepared = 0

    def ref(self, model: str, measure, index: int) -> ray.ObjectRef:
        key = (model, measure.key, index)
        if key not in self.refs:
            path = f"reps/{model}/{index}.npy"
            self.refs[key] = prepare_task.remote(self.store, path, measure.name, dict(measure.params))
            self.prepared += 1
        return self.refs[key]

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


def run_items(items: list[WorkItem], cache: GeometryCache, max_in_flight: int,
              progress: Callable[[int], None] = lambda n: None) -> list[str]:
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
        done, _ = ray.wait(list(running), num_returns=1, timeout=2.0)  # timeout: Ctrl-C stays responsive
        for ref in done:
            it = running.pop(ref)
            try:
                it.on_done(ray.get(ref))
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

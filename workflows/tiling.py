"""How big a tile is: chosen per measure from what a pair costs and how wide the cluster is.

A tile of side ``s`` holds up to ``s^2`` pairs and ships ``2s`` layers' geometry, so small tiles
spend their time on scheduling and transfers and large ones leave CPUs idle at the end. With
``compare.tile_size`` unset, a probe task times a few pairs of each measure (on the first
model's first, middle and last layers), and the side is the largest that keeps at least
``TASKS_PER_CPU`` tiles per CPU of the cluster on the largest grid, and no larger than a tile
of about ``TARGET_SECONDS`` of work; within ``[MIN_SIDE, MAX_SIDE]``. The choice is recorded in
the run's ``layout.json`` before any tile of that measure is written, and a resumed run takes
it from there, so a grid is never cut two ways. A fixed ``compare.tile_size`` always wins.
"""
from __future__ import annotations

import logging
import math
import time

import ray

from layergw import layout

log = logging.getLogger(__name__)

TARGET_SECONDS = 20.0
TASKS_PER_CPU = 4
MIN_SIDE = 4
MAX_SIDE = 128
PROBE_PAIRS = 4


def choose_side(largest_grid: int, seconds_per_pair: float, cpus: float) -> int:
    """The tile side for a measure (see the module docstring)."""
    if largest_grid < 2:
        return MIN_SIDE
    by_width = largest_grid / math.sqrt(2 * TASKS_PER_CPU * max(cpus, 1.0))
    by_cost = math.sqrt(TARGET_SECONDS / seconds_per_pair) if seconds_per_pair > 0 else MAX_SIDE
    return int(max(MIN_SIDE, min(MAX_SIDE, by_width, by_cost)))


def probe_pairs(n_layers: int) -> list[tuple[int, int]]:
    """Up to PROBE_PAIRS distinct pairs spread over a grid: ends, middle, neighbours."""
    last, mid = n_layers - 1, n_layers // 2
    wanted = [(0, last), (0, mid), (mid, last), (max(mid - 1, 0), mid)]
    return list(dict.fromkeys((i, j) for i, j in wanted if i < j))[:PROBE_PAIRS]


@ray.remote(num_cpus=1)
def probe_task(store, model: str, name: str, params: dict, pairs: list[tuple[int, int]]) -> float:
    """Seconds per pair of one measure on ``pairs`` of ``model``'s layers: the comparisons alone
    (reading and preparing a layer is done once per layer, not per pair, and on an object store
    would make every pair look dearer)."""
    from layergw import measures
    from workflows.compare import one_blas_thread

    one_blas_thread()
    m = measures.get(name, **params)
    layers = sorted({k for p in pairs for k in p})
    geom = {k: m.prepare(store.read_array(layout.rep(model, k))) for k in layers}
    t0 = time.perf_counter()
    for i, j in pairs:
        m.compare(geom[i], geom[j])
    return (time.perf_counter() - t0) / len(pairs)


def recorded_sizes(cfg, run) -> tuple[dict, dict[str, int]]:
    """(``layout.json``, measure key -> its recorded side), refusing a fixed ``compare.tile_size``
    that differs from a side the folder's tiles were cut with."""
    recorded = run.read_json(layout.TILING) if run.exists(layout.TILING) else {}
    old = recorded.get("tile_size")
    sizes = {m.key: int(old) for m in cfg.measures} if isinstance(old, int) else dict(old or {})
    fixed = cfg.compare.tile_size
    if fixed is not None:
        clash = sorted({s for s in sizes.values() if s != fixed})
        if clash:
            was = clash[0] if len(clash) == 1 else clash
            raise _config_error(f"run folder {run.url()} was tiled with compare.tile_size={was}, this config has "
                                f"{fixed}; use the same tile size, leave it unset to take the folder's, or use "
                                f"another run_id")
    return recorded, sizes


def resolve_tiling(cfg, run, manifests: dict, cpus: float) -> dict[str, int]:
    """Measure key -> tile side for this run, from ``layout.json``, the config or a probe; the
    choices are written to ``layout.json`` before any tile."""
    recorded, sizes = recorded_sizes(cfg, run)
    costs = dict(recorded.get("seconds_per_pair", {}))
    fixed = cfg.compare.tile_size
    missing = [m for m in cfg.measures if m.key not in sizes]
    if fixed is not None:
        sizes.update({m.key: fixed for m in missing})
    elif missing:
        first = next(iter(manifests.values()))
        largest = max(len(man.points) for man in manifests.values())
        pairs = probe_pairs(len(first.points))
        refs = {m.key: probe_task.remote(run, first.model, m.name, dict(m.params), pairs) for m in missing if pairs}
        for m in missing:
            try:
                costs[m.key] = float(ray.get(refs[m.key])) if m.key in refs else 0.0
            except ray.exceptions.RayError as e:  # a measure that fails here fails in its tiles, with rows
                log.warning("tile size of %s: the probe failed (%s); taking the smallest", m.key, e)
                costs[m.key] = math.inf
            sizes[m.key] = choose_side(largest, costs[m.key], cpus) if math.isfinite(costs[m.key]) else MIN_SIDE
            log.info("tiles of %s: side %d (%.3g s a pair, %g CPUs, largest grid %d layers)", m.key, sizes[m.key],
                     costs[m.key], cpus, largest)
    run.write_json(layout.TILING, {"tile_size": sizes,
                                   "seconds_per_pair": {k: v for k, v in costs.items() if math.isfinite(v)},
                                   "cpus": recorded.get("cpus", cpus)})
    return sizes


def _config_error(message: str) -> Exception:
    from workflows.config import ConfigError

    return ConfigError(message)

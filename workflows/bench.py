"""Benchmark suites; each writes one Parquet table of timings under the output folder.

Timings are for comparing ratios measured side by side in one run, not absolute claims.
"""
from __future__ import annotations

import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SUITES = ("gw", "measures")


def _layer(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)


def bench_measures(names: list[str], sizes: tuple[int, ...], repeats: int = 3) -> list[dict]:
    """Median seconds of prepare and of compare per measure and n, one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from layergw import measures

    rows = []
    with threadpool_limits(limits=1):
        for name in names:
            m = measures.get(name)
            for n in sizes:
                X, Y = _layer(n, 64, 0), _layer(n, 64, 1)
                prep, comp, iters = [], [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    gx = m.prepare(X)
                    prep.append(time.perf_counter() - t)
                    gy = m.prepare(Y)
                    t = time.perf_counter()
                    c = m.compare(gx, gy)
                    comp.append(time.perf_counter() - t)
                    iters.append(c.iterations if c.iterations is not None else -1)
                rows.append({"suite": "measures", "measure": name, "n": n, "d": 64, "repeats": repeats,
                             "prepare_s": float(np.median(prep)), "compare_s": float(np.median(comp)),
                             "iterations": int(np.median(iters))})
                log.info("%s n=%d prepare %.4fs compare %.4fs", name, n, rows[-1]["prepare_s"], rows[-1]["compare_s"])
    return rows


def run_bench(suite: str = "gw", out: str = "bench-results") -> str:
    from layergw import measures

    if suite not in SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}; valid suites: {', '.join(SUITES)}")
    if suite == "gw":
        rows = bench_measures(["gw"], (64, 128, 256, 512))
    else:
        rows = bench_measures(measures.names(), (256, 1000))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for r in rows:
        r.update(timestamp=stamp, machine=platform.node(), processor=platform.machine())
    path = Path(out) / f"{suite}-{stamp}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)

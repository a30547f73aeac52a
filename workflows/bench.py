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


#: Parameter settings timed besides each measure's defaults (when the measure has them).
VARIANTS: list[tuple[str, dict]] = [
    ("gw", {"normalize": "mean"}),
    ("gw", {"init": "best"}),
    ("cka", {"kernel": "rbf"}),
    ("cka", {"debiased": True}),
    ("cca", {"variance_kept": 0.99}),
    ("cca", {"weighting": "pwcca"}),
]


def _layer(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)


def _target(n: int, classes: int = 10) -> np.ndarray:
    return np.eye(classes)[np.arange(n) % classes]


def measure_cases(names: list[str]) -> list[tuple[str, dict]]:
    """Each named measure with its defaults, plus the VARIANTS of those measures it supports."""
    from layergw import measures

    cases = [(name, {}) for name in names]
    for name, params in VARIANTS:
        if name in names and set(params) <= set(measures.parameters(name)):
            cases.append((name, params))
    return cases


def bench_measures(cases: list[tuple[str, dict]] | list[str], sizes: tuple[int, ...], repeats: int = 3,
                   d: int = 64) -> list[dict]:
    """Median seconds of prepare and of compare per measure variant and n, one BLAS thread.

    Layers are (n, d) correlated Gaussians; probes get a 10-class one-hot target as Y.
    """
    import json

    from threadpoolctl import threadpool_limits

    from layergw import measures

    rows = []
    with threadpool_limits(limits=1):
        for case in cases:
            name, params = (case, {}) if isinstance(case, str) else case
            m = measures.get(name, **params)
            for n in sizes:
                X = _layer(n, d, 0)
                Y = _target(n) if m.target else _layer(n, d, 1)
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
                rows.append({"suite": "measures", "measure": name, "params": json.dumps(params, sort_keys=True),
                             "n": n, "d": d, "repeats": repeats,
                             "prepare_s": float(np.median(prep)), "compare_s": float(np.median(comp)),
                             "iterations": int(np.median(iters)), "value": float(c.value)})
                log.info("%s %s n=%d prepare %.4fs compare %.4fs", name, params or "", n,
                         rows[-1]["prepare_s"], rows[-1]["compare_s"])
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The measures suite as a Markdown table: one line per measure variant, columns per n."""
    sizes = sorted({r["n"] for r in rows})
    head = "| measure | params | " + " | ".join(f"prepare n={n} (s) | compare n={n} (s)" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sizes))]
    keyed: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        keyed.setdefault((r["measure"], r["params"]), {})[r["n"]] = r
    for (name, params), by_n in keyed.items():
        cells = []
        for n in sizes:
            r = by_n.get(n)
            cells += [f"{r['prepare_s']:.4g}", f"{r['compare_s']:.4g}"] if r else ["", ""]
        shown = "" if params == "{}" else f"`{params}`"
        lines.append(f"| {name} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_bench(suite: str = "gw", out: str = "bench-results", sizes: tuple[int, ...] | None = None,
              markdown: str | None = None) -> str:
    """Run one suite and write ``<out>/<suite>-<UTC stamp>.parquet``; returns its path.

    ``sizes`` replaces the suite's probe sizes; ``markdown`` also writes the table there.
    """
    from layergw import measures

    if suite not in SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}; valid suites: {', '.join(SUITES)}")
    if suite == "gw":
        rows = bench_measures([("gw", {})], sizes or (64, 128, 256, 512))
    else:
        rows = bench_measures(measure_cases(measures.names()), sizes or (256, 1000))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for r in rows:
        r.update(timestamp=stamp, machine=platform.node(), processor=platform.machine())
    path = Path(out) / f"{suite}-{stamp}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(
            f"Measured {stamp} on {platform.machine()}, one BLAS thread, d={rows[0]['d']}, "
            f"median of {rows[0]['repeats']} runs; compare ratios, not absolute times.\n\n" + markdown_table(rows))
    return str(path)

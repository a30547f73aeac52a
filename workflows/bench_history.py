"""The benchmark history in a store: every ``layergw bench --store URI`` run appends its figures,
and ``layergw bench history URI`` shows each figure's trend, draws it, and flags regressions.

A run's figures land in one file, ``history/<stamp>-<suite>-<id>.parquet`` (HISTORY), written
at once, so concurrent or killed runs never leave a partial history. A figure regressed when
its latest value is worse than the median of its previous ``window`` runs by more than
``threshold`` (relative): higher for times, lower for throughputs and speed-ups.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import uuid
from dataclasses import dataclass

import pyarrow as pa

log = logging.getLogger(__name__)

HISTORY = pa.schema([
    ("timestamp", pa.string()), ("suite", pa.string()), ("figure", pa.string()), ("value", pa.float64()),
    ("unit", pa.string()), ("better", pa.string()), ("code_version", pa.string()), ("commit", pa.string()),
    ("cluster", pa.string()),
])
THRESHOLD = 0.25
WINDOW = 5


def cluster_shape() -> dict:
    """Where the figures were measured: this machine, or the Ray cluster when one is running."""
    shape = {"machine": platform.machine(), "node": platform.node(), "cpus": os.cpu_count(), "gpus": 0}
    try:
        import ray

        if ray.is_initialized():
            res = ray.cluster_resources()
            shape.update(cpus=int(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), nodes=len(ray.nodes()))
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return shape


def append(store_uri: str, figures: list[dict], stamp: str, suite: str) -> str:
    """Write one run's figures into the store's history; the file's path in the store."""
    from layergw.store import ResultStore
    from workflows.runtime import code_version

    version = code_version()
    commit = version.split("+g", 1)[1].split(".")[0] if "+g" in version else ""
    rows = [{"timestamp": stamp, "code_version": version, "commit": commit, "cluster": json.dumps(cluster_shape()),
             **{k: f[k] for k in ("suite", "figure", "value", "unit", "better")}} for f in figures]
    store = ResultStore(store_uri)
    path = f"history/{stamp}-{suite}-{uuid.uuid4().hex[:8]}.parquet"
    store.write_table(path, pa.Table.from_pylist(rows, schema=HISTORY))
    log.info("benchmark history: %d figures -> %s", len(rows), store.url(path))
    return path


def read(store_uri: str):
    """Every run's figures, oldest first (a pandas DataFrame); a clear error when there are none."""
    from layergw.store import ResultStore

    store = ResultStore(store_uri)
    table = store.read_tables("history", HISTORY)
    if table is None or table.num_rows == 0:
        raise ValueError(f"no benchmark history under {store.url('history')}; run `layergw bench SUITE --store "
                         f"{store_uri}` first")
    return table.to_pandas().sort_values(["timestamp", "suite", "figure"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Trend:
    figure: str
    unit: str
    better: str
    runs: int
    last: float
    median: float | None  # of the previous runs in the window
    change: float | None  # relative, last vs median; positive = worse
    regressed: bool


def trends(history, threshold: float = THRESHOLD, window: int = WINDOW) -> list[Trend]:
    """Each figure's latest value against the median of its previous ``window`` runs."""
    out = []
    for figure, rows in history.groupby("figure", sort=False):
        rows = rows.sort_values("timestamp", kind="stable")
        values = rows["value"].tolist()
        better = rows["better"].iloc[-1]
        last, previous = values[-1], values[:-1][-window:]
        if previous:
            median = float(statistics.median(previous))
            change = (last - median) / median if median else None
            if change is not None and better == "higher":
                change = -change
            regressed = change is not None and change > threshold
        else:
            median = change = None
            regressed = False
        out.append(Trend(figure, rows["unit"].iloc[-1], better, len(values), last, median, change, regressed))
    return out


def report(store_uri: str, history, found: list[Trend], threshold: float) -> str:
    """A page with one trend figure per benchmark figure, written into the store; its URL."""
    from layergw import plots
    from layergw.report.html import CSS, esc, html_table, slug
    from layergw.store import ResultStore

    store = ResultStore(store_uri)
    figs = []
    for t in found:
        rows = history[history["figure"] == t.figure].sort_values("timestamp", kind="stable")
        png = f"{slug(t.figure)}.png"
        store.write_bytes(f"history-report/{png}", plots.png_bytes(
            plots.curves_png, list(range(len(rows))), {t.figure: rows["value"].tolist()}, title=t.figure,
            xlabel="run (oldest first)", ylabel=t.unit))
        figs.append(f'<figure><img src="{esc(png)}" alt="{esc(t.figure)}"><figcaption>{esc(t.figure)} '
                    f'({esc(t.better)} is better)</figcaption></figure>')
    table = html_table(["figure", "runs", "last", "median of previous", "change (+ worse)", "regressed"],
                       [[t.figure, t.runs, t.last, t.median, None if t.change is None else round(t.change, 4),
                         "REGRESSED" if t.regressed else ""] for t in found], num={1, 2, 3, 4})
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>layergw benchmark history</title>'
            f"<style>{CSS}</style></head><body><h1>Benchmark history</h1>"
            f'<p class="muted">A figure regressed when its last run is worse than the median of its previous '
            f"{WINDOW} by more than {threshold:.0%}.</p>{table}<div class=\"figs\">{''.join(figs)}</div></body></html>\n")
    store.write_bytes("history-report/index.html", page.encode())
    return store.url("history-report/index.html")

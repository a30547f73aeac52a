"""The benchmark history in a store: every ``layergw bench --store URI`` run appends its figures,
and ``layergw bench history URI`` shows each figure's trend, draws it, and flags regressions.

A run's figures land in one file, ``history/<stamp>-<suite>-<id>.parquet`` (HISTORY), written
at once, so concurrent or killed runs never leave a partial history. Each figure is the median
of ``repeats`` measurements in that run, with their range (``low``, ``high``). On a shared
machine one run's noise is large, so a figure regressed only when even the latest run's best
repeat lies outside the range its previous ``window`` runs spanned (every repeat of theirs) by
more than ``threshold`` (relative) on the worse side: above it for times, below it for
throughputs and speed-ups.
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
    ("cluster", pa.string()), ("low", pa.float64()), ("high", pa.float64()), ("repeats", pa.int64()),
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
             "low": f.get("low", f["value"]), "high": f.get("high", f["value"]), "repeats": f.get("repeats", 1),
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
    df = table.to_pandas()
    for edge in ("low", "high"):  # histories written before runs were repeated: one value, no spread
        df[edge] = df[edge].fillna(df["value"])
    df["repeats"] = df["repeats"].fillna(1).astype(int)
    return df.sort_values(["timestamp", "suite", "figure"], kind="stable").reset_index(drop=True)


def combine(runs: list[list[dict]]) -> list[dict]:
    """One figure list from several repeats of a suite: each figure's median, with the range of
    the repeats as ``low`` and ``high``."""
    out = []
    for f in runs[0]:
        values = [g["value"] for run in runs for g in run if g["figure"] == f["figure"]]
        out.append({**f, "value": float(statistics.median(values)), "low": float(min(values)),
                    "high": float(max(values)), "repeats": len(values)})
    return out


@dataclass(frozen=True)
class Trend:
    figure: str
    unit: str
    better: str
    runs: int
    last: float
    low: float | None  # the range every repeat of the previous runs in the window spanned
    high: float | None
    change: float | None  # how far the latest run's best repeat lies beyond that range, worse side (0: not)
    regressed: bool

    def describe(self) -> str:
        """One line: the figure, its last value, the history's range and which way is worse."""
        head = f"{'REGRESSED ' if self.regressed else ''}{self.figure}: {self.last:.4g} {self.unit} over {self.runs} runs"
        if self.low is None:
            return head
        worse = "above" if self.better == "lower" else "below"
        where = (f"every repeat {worse} it, the best by {self.change:.1%}" if self.change else "overlapping it")
        return (f"{head} (previous runs {self.low:.4g}..{self.high:.4g}: {where}; {self.better} is better, so a value "
                f"{worse} the range is worse)")


def trends(history, threshold: float = THRESHOLD, window: int = WINDOW) -> list[Trend]:
    """Each figure's latest run against the range its previous ``window`` runs spanned: the
    change is how far the latest run's best repeat lies beyond that range on the worse side,
    so a run whose repeats overlap the history (noise on some repeats) never regresses, and a
    run slower in every repeat does."""
    out = []
    for figure, rows in history.groupby("figure", sort=False):
        rows = rows.sort_values("timestamp", kind="stable")
        better = rows["better"].iloc[-1]
        latest, previous = rows.iloc[-1], rows.iloc[:-1].tail(window)
        low = high = change = None
        regressed = False
        if len(previous):
            low, high = float(previous["low"].min()), float(previous["high"].max())
            if better == "lower":
                change = max(0.0, (float(latest["low"]) - high) / high) if high else None
            else:
                change = max(0.0, (low - float(latest["high"])) / low) if low else None
            regressed = change is not None and change > threshold
        out.append(Trend(figure, rows["unit"].iloc[-1], better, len(rows), float(latest["value"]), low, high,
                         change, regressed))
    return out


def report(store_uri: str, history, found: list[Trend], threshold: float) -> str:
    """A page with one trend figure per benchmark figure, written into the store; its URL."""
    from layergw import plot
    from layergw.report.html import CSS, esc, html_table, slug
    from layergw.store import ResultStore

    store = ResultStore(store_uri)
    figs = []
    for t in found:
        rows = history[history["figure"] == t.figure].sort_values("timestamp", kind="stable")
        png = f"{slug(t.figure)}.png"
        store.write_bytes(f"history-report/{png}", plot.png_bytes(
            plot.curves_png, list(range(len(rows))), {t.figure: rows["value"].tolist()}, title=t.figure,
            xlabel="run (oldest first)", ylabel=t.unit))
        figs.append(f'<figure><img src="{esc(png)}" alt="{esc(t.figure)}"><figcaption>{esc(t.figure)} '
                    f'({esc(t.better)} is better)</figcaption></figure>')
    table = html_table(["figure", "better", "runs", "last (median of repeats)", "previous low", "previous high",
                        "beyond the range, worse side", "regressed"],
                       [[t.figure, t.better, t.runs, t.last, t.low, t.high,
                         None if t.change is None else round(t.change, 4), "REGRESSED" if t.regressed else ""]
                        for t in found], num={2, 3, 4, 5, 6})
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>layergw benchmark history</title>'
            f"<style>{CSS}</style></head><body><h1>Benchmark history</h1>"
            f'<p class="muted">A figure regressed when even the best repeat of its last run lies outside the range of '
            f"its previous runs' repeats by more than {threshold:.0%} on the worse side.</p>{table}<div class=\"figs\">{''.join(figs)}</div></body></html>\n")
    store.write_bytes("history-report/index.html", page.encode())
    return store.url("history-report/index.html")

"""What a study is doing, as a user sees it: one line per stage with counts and the time left,
the same in a terminal and in a Ray job's logs, and ``run.json`` saying which stage runs."""
from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("layergw.progress")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Counts of one stage's work; logs ``stage: done/total unit (p%), elapsed, ~left`` at most
    every ``interval`` seconds and when the stage ends. Work found already done counts as done
    but not towards the rate."""

    def __init__(self, stage: str, total: int, done: int = 0, unit: str = "items", interval: float = 10.0,
                 bar: Any = None) -> None:
        self.stage, self.total, self.done, self.unit, self.interval = stage, total, done, unit, interval
        self.start_done, self.t0 = done, time.monotonic()
        self.last = self.t0
        self.bar = bar
        log.info("%s: %d %s, %d already done", stage, total, unit[:-1] if total == 1 and unit.endswith("s") else unit,
                 done)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.t0
        new = self.done - self.start_done
        left = (self.total - self.done) * elapsed / new if new else float("nan")
        share = 100.0 * self.done / self.total if self.total else 100.0
        eta = f", about {_duration(left)} left" if new and self.done < self.total else ""
        return f"{self.stage}: {self.done}/{self.total} {self.unit} ({share:.0f}%), {_duration(elapsed)}{eta}"


def mark_stage(run: Any, stage: str, timings: dict, **extra: Any) -> None:
    """``run.json`` while a study runs: its stage, the stages' timings so far, what failed."""
    from layergw import layout

    run.write_json(layout.RUN, {"status": "running", "stage": stage, "timings": dict(timings), **extra})

"""Progress lines: counts, shares, the time left from the rate of new work only."""
from __future__ import annotations

import logging

from workflows.progress import Progress, _duration


def test_duration_reads_as_minutes_or_hours() -> None:
    assert _duration(5) == "0m05s"
    assert _duration(125) == "2m05s"
    assert _duration(3 * 3600 + 7 * 60) == "3h07m"
    assert _duration(-3) == "0m00s"


def test_time_left_counts_only_work_done_in_this_run(monkeypatch) -> None:
    import types

    clock = iter([100.0, 110.0])
    # the module's own clock only: patching time.monotonic itself would feed any other caller
    # (a log filter, a server thread) from this iterator too
    monkeypatch.setattr("workflows.progress.time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    p = Progress("compare", total=100, done=50, unit="pairs", interval=1e9)
    p.done += 10  # 10 new pairs in 10 s: the 40 left take 40 s, the 50 found done do not speed it up
    assert p.line() == "compare: 60/100 pairs (60%), 0m10s, about 0m40s left"


def test_no_estimate_before_any_new_work_and_none_when_finished() -> None:
    p = Progress("ablate", total=4, done=2, unit="cells")
    assert "left" not in p.line()
    p.done = 4
    assert "left" not in p.line() and "4/4 cells (100%)" in p.line()


def test_update_logs_the_last_item_even_within_the_interval(caplog) -> None:
    caplog.set_level(logging.INFO, "layergw.progress")
    p = Progress("extract", total=2, unit="models", interval=1e9)
    p.update()
    p.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "extract: 2 models, 0 already done"
    assert lines[-1].startswith("extract: 2/2 models (100%)")
    assert len(lines) == 2  # within the interval only the last update is logged


def test_updates_reach_a_progress_bar() -> None:
    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    p = Progress("compare", total=10, unit="pairs", bar=bar)
    p.update(3)
    p.update(7)
    assert bar.n == 10

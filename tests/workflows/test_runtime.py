"""Worker logging: training reports reach the driver, thinned, warnings never dropped."""
from __future__ import annotations

import logging

from workflows.runtime import _EveryFewSeconds


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "msg", None, None)


def test_info_lines_are_thinned_per_logger_and_warnings_pass(monkeypatch) -> None:
    clock = iter([0.0, 5.0, 6.0, 31.0])
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    f = _EveryFewSeconds(30.0)
    assert f.filter(_record("layergw.training", logging.INFO))       # t=0: first line passes
    assert not f.filter(_record("layergw.training", logging.INFO))   # t=5: within 30 s
    assert f.filter(_record("layergw.other", logging.INFO))          # t=6: another logger has its own clock
    assert f.filter(_record("layergw.training", logging.WARNING))    # no clock read: always passes
    assert f.filter(_record("layergw.training", logging.INFO))       # t=31: 30 s on


def test_tasks_get_one_blas_thread_and_quiet_hugging_face_unless_the_user_said_otherwise(monkeypatch) -> None:
    from workflows.runtime import task_env

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    env = task_env()
    assert env["OMP_NUM_THREADS"] == "1" and env["TRANSFORMERS_VERBOSITY"] == "error"
    assert env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    assert "TRANSFORMERS_VERBOSITY" not in task_env()  # the user's own setting reaches the workers

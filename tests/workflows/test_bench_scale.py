"""bench scale at a small size: every pair stored once, on both stores, with each figure there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.long  # its own Ray and a moto server, in a subprocess

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_runs_a_small_study_on_both_stores_and_reports_every_figure(tmp_path: Path) -> None:
    script = ("import json; from workflows.bench_scale import bench_scale; "
              "rows, figures = bench_scale(sizes=(24,), cpus=4); print(json.dumps([rows, figures]))")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows, figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["store"] for r in rows] == ["local", "s3"]
    for r in rows:
        assert r["pairs_stored"] == r["pairs"] == 24 * 23 // 2 and r["stored_once"]
        assert r["tiles"] == r["listed_tiles"] > 0 and r["resume_tiles"] >= 1
        assert r["driver_peak_mib"] > 0 and r["report_mib"] > 0 and r["peak_in_flight"] >= 1
        for key in ("plan_s", "group_s", "report_s", "resume_s", "list_s", "overhead_ms_per_tile"):
            assert r[key] is not None, key
        assert r["overhead_ms_per_tile"] > 0 and r["agents_ms_per_tile"] >= 0 and 0 <= r["agents_core_share"] < 2
        assert r["overhead_ms_per_tile"] == pytest.approx(r["driver_ms_per_tile"] + r["scheduler_ms_per_tile"])
    assert {f["figure"] for f in figures} >= {"driver peak RSS, 24 points, local", "plan, 24 points, s3"}

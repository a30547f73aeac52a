"""docs/walkthrough.ipynb: committed without outputs, and its cells run in order in a fresh
Python process (as a kernel started in docs/ runs them) on the demo config."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "walkthrough.ipynb"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable

RUNNER = """
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
scope = {"__name__": "__main__"}
for i, cell in enumerate(cells):
    if cell["cell_type"] != "code":
        continue
    src = "".join(cell["source"])
    print(f"--- cell {i}", flush=True)
    exec(compile(src, f"<cell {i}>", "exec"), scope)
print("REPORT", scope["run"].report_path)
"""


def _cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text())["cells"]


def test_the_notebook_is_committed_without_outputs() -> None:
    code = [c for c in _cells() if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.long
@pytest.mark.ray
def test_the_notebook_runs_the_demo_and_reads_it_back(tmp_path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": "/tmp", "MPLBACKEND": "Agg"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([PYTHON, "-c", RUNNER, str(NOTEBOOK)], cwd=tmp_path / "docs", env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    report = out.stdout.strip().splitlines()[-1].removeprefix("REPORT ").removeprefix("file://")
    assert Path(report).is_file() and str(tmp_path / "runs" / "demo") in report

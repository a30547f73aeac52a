"""The Python API: layergw.run in a fresh process on the demo config, and a run opened by URI
whose DataFrames equal the stored Parquet."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from layergw import layout, results
from layergw.store import ResultStore

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
NAMES = ["embed", "blocks.0", "blocks.1", "blocks.2"]


def _fake_run(root: Path) -> ResultStore:
    """A run folder with one model, one measure's pairs, groups and a config, as the driver writes them."""
    store = ResultStore(str(root / "study" / "r1"))
    store.write_json(layout.CONFIG, {"config": {"study": "study", "inputs": {"n": 8}}, "run_id": "r1"})
    store.write_json(layout.RUN, {"status": "complete", "stage": "done"})
    store.write_table(layout.POINTS, results.table(
        [{"model": "m", "layer": n, "layer_index": i, "display": None, "block": i - 1, "role": "block", "dim": 4,
          "depth": float(i)} for i, n in enumerate(NAMES)],
        results.POINTS))
    rows = [{"study": "study", "run_id": "r1", "model_a": "m", "seed_a": 0, "checkpoint_a": "final", "layer_a": NAMES[i],
             "layer_a_index": i, "model_b": "m", "seed_b": 0, "checkpoint_b": "final", "layer_b": NAMES[j],
             "layer_b_index": j, "measure": "cka", "params": "{}", "kind": "similarity", "value": 1 - (j - i) / 10,
             "n_samples": 8, "iterations": 0, "converged": True, "seconds": 0.0, "error": None,
             "config_hash": "h", "code_version": "0"} for i in range(4) for j in range(i + 1, 4)]
    store.write_table(layout.tile("m", "cka-0000", 0, 0), results.table(rows, results.PAIRS))
    store.write_table(layout.GROUPS, results.table(
        [{"model": "m", "measure": "cka", "params": "{}", "method": "segment", "selection": "knee", "k": 2,
          "k_eigengap": None, "k_silhouette": None, "layer": n, "layer_index": i, "display": None,
          "group": int(i >= 2), "boundary": i == 2, "seed": 0} for i, n in enumerate(NAMES)], results.GROUPS))
    return store


def test_an_opened_run_gives_its_matrix_labelled_by_layer_and_its_tables_as_stored(tmp_path) -> None:
    import layergw

    _fake_run(tmp_path)
    run = layergw.open_run(str(tmp_path / "study" / "r1"))
    assert run.config["inputs"]["n"] == 8 and run.status["status"] == "complete"
    assert run.models == ["m"] and run.measure_keys("m") == ["cka-0000"]
    assert run.variants("m").to_dict("records") == [{"key": "cka-0000", "measure": "cka", "params": "{}"}]
    M = run.matrix("m", "cka")
    assert list(M.index) == NAMES and list(M.columns) == NAMES
    pairs = run.pairs("m", "cka")
    for r in pairs.itertuples():
        assert M.loc[r.layer_a, r.layer_b] == M.loc[r.layer_b, r.layer_a] == r.value
    assert np.diag(M.to_numpy()).tolist() == [1.0] * 4  # a similarity's diagonal
    assert run.groups().equals(pq.read_table(tmp_path / "study" / "r1" / "groups.parquet").to_pandas())
    assert run.report_path.endswith("study/r1/report/index.html")
    assert layergw.open_run(str(tmp_path / "study")).uri == run.uri  # a study folder of one run opens it
    assert run.ablations().empty and run.prune_plan().empty and run.diagnostics("m") == {}


def test_bad_names_say_what_the_run_has(tmp_path) -> None:
    import layergw

    _fake_run(tmp_path)
    run = layergw.open_run(str(tmp_path / "study" / "r1"))
    with pytest.raises(ValueError, match=r"model must be one of \['m'\], got 'x'"):
        run.matrix("x", "cka")
    with pytest.raises(ValueError, match=r"measure must name one of 'm''s measures \['cka-0000'\].*got 'gw'"):
        run.matrix("m", "gw")
    with pytest.raises(ValueError, match="not a run folder"):
        layergw.open_run(str(tmp_path / "nothing"))


def test_a_heatmap_of_a_run_has_its_layers_and_boundary(tmp_path) -> None:
    import layergw
    import layergw.plot

    _fake_run(tmp_path)
    fig = layergw.plot.heatmap(layergw.open_run(str(tmp_path / "study" / "r1")), "m", "cka")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert any(abs(x - 1.5) < 1e-9 for line in ax.get_lines() for x in line.get_xdata())  # boundary before layer 2


def test_overrides_keep_their_python_types_and_bad_ones_name_themselves() -> None:
    from workflows.api import resolve
    from workflows.config import ConfigError

    cfg = resolve(str(REPO / "configs" / "demo.yaml"), {"inputs.n": 64, "measures": [
        {"name": "gw", "params": {"tol_rel": 1e-7}}], "models.0.seed": 3})
    assert cfg.inputs.n == 64 and cfg.measures[0].params == {"tol_rel": 1e-7} and cfg.models[0].seed == 3
    assert resolve(cfg.model_dump(mode="json"), {"inputs.n": 32}).inputs.n == 32
    assert resolve(cfg, {"inputs.seed": 5}).inputs.seed == 5 and resolve(cfg).inputs.n == 64
    with pytest.raises(ConfigError, match="models.9 is not an index of a list of 3"):
        resolve(cfg, {"models.9.seed": 1})
    with pytest.raises(ConfigError, match="config must be a YAML path, a dict or a StudyConfig, got int"):
        resolve(3)


SCRIPT = """
import json, sys
import layergw
assert "ray" not in sys.modules
run = layergw.run("configs/demo.yaml", store=sys.argv[1], **{"inputs.n": 64, "models": [
    {"id": "model_0", "family": "modsum", "checkpoint": "builtin:model_0"}], "targets.enabled": False,
    "measures": ["cka", "gw", {"name": "gw", "params": {"normalize": "mean"}}]})
keys = run.measure_keys("model_0")
try:
    run.matrix("model_0", "gw")
    ambiguous = ""
except ValueError as e:
    ambiguous = str(e)
M = run.matrix("model_0", [k for k in keys if k.startswith("gw")][0])
pairs = run.pairs("model_0", [k for k in keys if k.startswith("gw")][0])
worst = max(abs(M.loc[r.layer_a, r.layer_b] - r.value) for r in pairs.itertuples())
print(json.dumps({"uri": run.uri, "shape": list(M.shape), "names": list(M.index), "pairs": len(pairs),
                  "worst": worst, "ambiguous": ambiguous, "status": run.status["status"], "keys": keys}))
"""


@pytest.mark.long
@pytest.mark.ray
def test_layergw_run_in_a_fresh_process_gives_a_run_whose_frames_equal_the_stored_results(tmp_path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": "/tmp"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([PYTHON, "-c", SCRIPT, str(tmp_path / "store")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == "complete" and got["shape"] == [31, 31] and got["pairs"] == 31 * 30 // 2
    assert got["worst"] == 0.0
    assert "has 2 variants" in got["ambiguous"] and len(got["keys"]) == 3
    import layergw

    run = layergw.open_run(got["uri"])
    assert run.groups().equals(pq.read_table(Path(got["uri"]) / "groups.parquet").to_pandas())
    points = pq.read_table(Path(got["uri"]) / "points.parquet").to_pandas()
    assert got["names"] == points[points["model"] == "model_0"].sort_values("layer_index")["layer"].tolist()

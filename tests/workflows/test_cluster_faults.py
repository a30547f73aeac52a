"""Faults on a multi-node cluster (a head and two worker nodes simulated on this machine, in a
subprocess): a worker node lost during compare, the process of a running compare or extraction
task killed, the driver killed on a surviving head, and a node lost during a train job or an
ablation cell. Each study completes with every pair row (and cell) exactly once, no tile file
was ever visible half-written, and a lost training resumes from its saved state."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.long  # multi-node fault tests: `make test-all` runs this file on one worker

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def _inflict(mode: str, config: Path, tmp_path: Path, **env_extra: str) -> tuple[dict, str]:
    """Run ``cluster_faults.py MODE`` on a study config in a subprocess; its report and logs."""
    report = tmp_path / "report.json"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tempfile.mkdtemp(prefix="lgw-c-", dir="/tmp"),
           "PYTHONPATH": str(REPO), **env_extra}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([PYTHON, str(Path(__file__).with_name("cluster_faults.py")), mode, str(config),
                           str(report)], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0 and report.exists(), logs[-6000:]
    return json.loads(report.read_text()), logs


@pytest.mark.ray
@pytest.mark.parametrize("mode", ["node", "workers"])
def test_a_study_survives_a_lost_node_or_killed_task_with_every_row_once(mode, study_dict, tiny_checkpoints,
                                                                       tiny_layers, tmp_path) -> None:
    from layergw.store import ResultStore
    from workflows.config import load_config
    from tests.workflows.test_study import _assert_complete_pairs, _pairs

    # gw at n = 64 in tiles of 2 points: enough tasks, each long enough to be caught running
    data = study_dict(tiny_checkpoints, tmp_path / "store", measures=["gw"], targets={"enabled": False},
                      inputs={"n": 64, "seed": 0}, compare={"tile_size": 2})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    out, logs = _inflict(mode, path, tmp_path)
    from tests.workflows.cluster_faults import TASK_TITLES

    assert len(out["killed"]) == len(TASK_TITLES[mode]), f"not everything was killed: {out}\n{logs[-2000:]}"
    assert out["finished"], f"{out}\n{logs[-3000:]}"
    assert out["partial"] == []
    cfg = load_config(path)
    run = ResultStore(str(tmp_path / "store")).child(cfg.study, cfg.resolved_run_id)
    _assert_complete_pairs(_pairs(run), cfg, tiny_layers)
    assert run.exists("report/index.html")


def _tiles(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in (root / "pairs").rglob("*.parquet")} \
        if (root / "pairs").exists() else {}


@pytest.mark.ray
def test_a_driver_killed_on_a_surviving_cluster_resumes_there_without_redoing_tiles(study_dict, tiny_checkpoints,
                                                                                   tiny_layers, tmp_path) -> None:
    """`layergw run --address` on a real head: the driver is SIGKILLed after some tiles, the
    head lives on, and the same command again computes only the missing tiles."""
    import signal
    import time

    from layergw.store import ResultStore
    from tests.workflows.heads import ray_head
    from tests.workflows.test_study import _assert_complete_pairs, _pairs
    from workflows.config import load_config

    data = study_dict(tiny_checkpoints, tmp_path / "store", measures=["gw"], targets={"enabled": False},
                      inputs={"n": 64, "seed": 0}, compare={"tile_size": 2})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    root = tmp_path / "store" / cfg.study / cfg.resolved_run_id
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with ray_head(tmp_path / "head.log") as head:
        args = [PYTHON, "-m", "workflows.cli", "run", str(path), "--address", head.address, "--no-progress"]
        driver = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True,
                                  stdout=(tmp_path / "killed.log").open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and len(_tiles(root)) < 3:
            time.sleep(0.05)
        assert driver.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        time.sleep(1.0)  # tasks the driver left are cancelled with its job; let any in flight land
        finished = _tiles(root)
        assert head.process.poll() is None  # the cluster survived the driver
        again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = _tiles(root)
    assert {k: after[k] for k in finished} == finished  # finished tiles were not computed again
    assert len(after) > len(finished)
    run = ResultStore(str(tmp_path / "store")).child(cfg.study, cfg.resolved_run_id)
    _assert_complete_pairs(_pairs(run), cfg, tiny_layers)


@pytest.mark.ray
@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_node_lost_during_training_resumes_from_the_saved_state(where, study_dict, tmp_path, request) -> None:
    """A train job whose node is lost after it saved its state is retried elsewhere and goes on
    from that state (the recipe says so), then the study completes on the trained model. On
    an object store the job's folder is mirrored there as it trains (every half second here)."""
    store = str(tmp_path / "store") if where == "local" else request.getfixturevalue("s3_uri")
    train = [{"id": "tiny", "family": "modsum",
              "params": {"task": "f_mod", "n_blocks": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32,
                         "max_epochs": 3000, "extra_epochs": 0, "eval_every": 100}}]
    data = study_dict({}, store, measures=["cka"], targets={"enabled": False}, inputs={"n": 16, "seed": 0},
                      train=train, models=[{"id": "tiny", "family": "modsum", "checkpoint": "train:tiny"}])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    out, logs = _inflict("node-train", path, tmp_path, LAYERGW_SYNC_S="0.5")
    assert out["killed"] and out["finished"], f"{out}\n{logs[-3000:]}"
    assert "resuming from" in logs and "epoch" in logs, logs[-3000:]
    from layergw.store import ResultStore
    from tests.workflows.test_study import PAIR_KEY, _pairs
    from workflows.config import load_config

    cfg = load_config(path)
    run = ResultStore(store).child(cfg.study, cfg.resolved_run_id)
    n_points = run.read_table("points.parquet").num_rows
    pairs = _pairs(run)
    assert len(pairs) == n_points * (n_points - 1) // 2 and not pairs.duplicated(PAIR_KEY).any()


@pytest.mark.ray
@pytest.mark.s3
def test_a_node_lost_during_an_ablation_cell_resumes_its_fine_tuning(study_dict, tiny_checkpoints, s3_uri,
                                                                     tmp_path) -> None:
    """An ablation cell whose node is lost after its fine-tuning saved a state goes on from that
    state on another node (mirrored to S3 every half second), every cell ends in
    ablations.parquet once, and no cell's working folder is left in the store."""
    from layergw.store import ResultStore
    from workflows.config import load_config

    entry = {"model": "tiny_fmod3", "ablations": ["freeze"], "selectors": ["first"], "seeds": [0],
             "params": {"epochs": 400, "head_epochs": 50}}
    data = study_dict({"tiny_fmod3": tiny_checkpoints["tiny_fmod3"]}, s3_uri, measures=["cka"],
                      targets={"enabled": False}, inputs={"n": 16, "seed": 0}, ablate=[entry])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    out, logs = _inflict("node-ablate", path, tmp_path, LAYERGW_SYNC_S="0.5")
    assert out["killed"] and out["finished"], f"{out}\n{logs[-3000:]}"
    assert "resuming from epoch" in logs, logs[-3000:]
    cfg = load_config(path)
    run = ResultStore(s3_uri).child(cfg.study, cfg.resolved_run_id)
    table = run.read_table("ablations.parquet").to_pandas()
    acc = table[table["metric"] == "accuracy"]
    cells = acc[acc["ablation"] == "freeze"]
    assert sorted(cells["first_trained_block"]) == [0, 1, 2]  # each cell once
    assert ((acc["value"] >= 0) & (acc["value"] <= 1)).all()
    assert [f for f in run.list_files("ablations") if "/work/" in f] == []

"""`layergw submit`: what is shipped and refused (with a stand-in Jobs client), then a real Ray
head on 127.0.0.1 running a small study into an S3 store served by moto."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.long  # real Ray heads and the Jobs API

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class _Job:
    submission_id: str
    status: str
    start_time: int
    message: str = ""


class FakeJobs:
    """The Jobs API surface `submit` uses, recording submissions."""

    def __init__(self, jobs=()):
        self.jobs = list(jobs)
        self.sent = []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, **kw):
        self.sent.append(kw)
        self.jobs.append(_Job(kw["submission_id"], "PENDING", len(self.jobs) + 1))
        return kw["submission_id"]


def _cfg(tmp_path, **changes):
    from workflows.config import load_config

    path = tmp_path / "study.yaml"
    data = {"study": "my study", "store": "./runs", "models": [{"id": "m", "checkpoint": "builtin:model_0"}],
            **changes}
    path.write_text(yaml.safe_dump(data))
    return load_config(path), path


def test_a_local_store_is_refused_for_a_remote_cluster_and_made_absolute_for_a_local_one(tmp_path):
    from workflows.submit import SubmitError, job_store, submit

    cfg, path = _cfg(tmp_path)
    with pytest.raises(SubmitError, match=r"store './runs' is a local path, but the Ray cluster at "
                                          r"http://10\.0\.0\.5:8265 is remote.*use --store s3://"):
        submit(cfg, path, "http://10.0.0.5:8265", store=None, overrides=[], client=FakeJobs())
    assert job_store("s3://b/p?endpoint_override=h:1", "http://10.0.0.5:8265") == "s3://b/p?endpoint_override=h:1"
    assert job_store("runs", "http://127.0.0.1:8265") == str((Path.cwd() / "runs").resolve())


def test_the_job_ships_the_config_and_this_checkouts_packages_under_an_id_from_the_study(tmp_path):
    from workflows.submit import base_id, submit

    cfg, path = _cfg(tmp_path)
    jobs = FakeJobs()
    done = submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=["inputs.n=64"], client=jobs)
    sent = jobs.sent[0]
    assert done.submission_id == sent["submission_id"] == base_id(cfg) == f"layergw-my-study-{cfg.results_hash()[:12]}"
    assert sent["entrypoint"] == ("python -m workflows.cli run study.yaml --store s3://b/p --no-progress inputs.n=64")
    assert sent["runtime_env"]["py_modules"] == [str(REPO / "layergw"), str(REPO / "workflows")]
    assert not Path(sent["runtime_env"]["working_dir"]).exists()  # the staging folder is cleaned up
    assert "AWS" not in json.dumps(sent)  # no credentials travel with the job


def test_a_running_study_is_refused_or_attached_and_an_ended_one_gets_the_next_id(tmp_path):
    from workflows.submit import SubmitError, base_id, submit

    cfg, path = _cfg(tmp_path)
    base = base_id(cfg)
    running = FakeJobs([_Job(base, "RUNNING", 1)])
    with pytest.raises(SubmitError, match=f"already submitted as {base} \\(RUNNING\\)"):
        submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], client=running)
    assert submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], attach=True,
                  client=running).attached
    ended = FakeJobs([_Job(base, "FAILED", 1), _Job("layergw-other-0", "RUNNING", 2)])
    done = submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], client=ended)
    assert done.submission_id == f"{base}-2" and not done.attached


def test_a_head_without_a_job_agent_yet_is_retried_and_other_errors_are_not(tmp_path, monkeypatch):
    from workflows import submit as sub

    class Starting(FakeJobs):
        def __init__(self, failures: int, message: str):
            super().__init__()
            self.failures, self.message = failures, message

        def submit_job(self, **kw):
            if self.failures:
                self.failures -= 1
                raise RuntimeError(f"Request failed with status code 500: {self.message}")
            return super().submit_job(**kw)

    monkeypatch.setattr(sub.time, "sleep", lambda s: None)
    cfg, path = _cfg(tmp_path)
    starting = Starting(3, "No available agent to submit job, please try again later..")
    done = sub.submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], client=starting)
    assert len(starting.sent) == 1 and done.submission_id == starting.sent[0]["submission_id"]
    broken = Starting(1, "Internal error")
    with pytest.raises(RuntimeError, match="Internal error"):
        sub.submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], client=broken)
    never = Starting(10**6, "No available agent to submit job")
    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr(sub.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(RuntimeError, match="no job agent after 90s .*No available agent.*dashboard_agent.log"):
        sub.submit(cfg, path, "http://127.0.0.1:8265", store="s3://b/p", overrides=[], client=never)
    assert never.failures > 10**6 - 20


# -- a real Ray head -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory, s3_server):
    """`ray start --head` with its dashboard (Jobs API) on 127.0.0.1, stopped at the end."""
    from tests.workflows.heads import ray_head as start_head

    with start_head(tmp_path_factory.mktemp("head") / "head.log", dashboard=True) as head:
        yield head.dashboard


def _layergw(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([str(BIN / "python"), "-m", "workflows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=400)


@pytest.mark.ray
@pytest.mark.s3
def test_a_study_submitted_to_a_real_head_runs_into_s3_and_a_duplicate_is_refused(ray_head, s3_uri, tiny_checkpoints,
                                                                                tmp_path):
    from layergw.store import ResultStore

    data = {"study": "sub", "models": [{"id": "m", "checkpoint": tiny_checkpoints["tiny_fmod"]}],
            "inputs": {"n": 12, "seed": 0}, "measures": ["cka"], "targets": {"enabled": False}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data))
    done = _layergw("submit", "study.yaml", "--address", ray_head, "--store", s3_uri, "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout and "run finished" in done.stdout
    runs = ResultStore(s3_uri).child("sub")
    run_ids = {p.split("/")[0] for p in runs.list_files("", "run.json")}
    assert len(run_ids) == 1
    run = runs.child(run_ids.pop())
    assert run.read_json("run.json")["status"] == "complete"
    assert run.read_tables("pairs").num_rows == 19 * 18 // 2
    status = _layergw("status", "study.yaml", "--address", ray_head, cwd=tmp_path)
    assert "SUCCEEDED" in status.stdout

    # the same study again while it runs is refused naming the running job
    first = _layergw("submit", "study.yaml", "--address", ray_head, "--store", s3_uri, cwd=tmp_path)
    assert first.returncode == 0 and "-2" in first.stdout  # a finished study resubmits under the next id
    again = _layergw("submit", "study.yaml", "--address", ray_head, "--store", s3_uri, cwd=tmp_path)
    assert again.returncode == 1 and "already submitted as layergw-sub-" in again.stderr
    assert _layergw("logs", "study.yaml", "--address", ray_head, "--follow", cwd=tmp_path).returncode == 0


@pytest.mark.ray
@pytest.mark.s3
def test_a_failing_study_exits_non_zero_with_the_error(ray_head, s3_uri, tmp_path):
    broken = tmp_path / "broken"
    (broken.with_suffix(".safetensors")).write_bytes(b"not a checkpoint")
    broken.with_suffix(".json").write_text("{}")
    data = {"study": "bad", "models": [{"id": "m", "checkpoint": str(broken)}], "inputs": {"n": 12, "seed": 0},
            "measures": ["cka"], "targets": {"enabled": False}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data))
    done = _layergw("submit", "study.yaml", "--address", ray_head, "--store", s3_uri, "--wait", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED" in done.stdout
    status = _layergw("status", "study.yaml", "--address", ray_head, cwd=tmp_path)
    assert "FAILED" in status.stdout and "Error" in status.stdout

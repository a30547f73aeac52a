"""A study as a Ray job: ``layergw submit``, ``layergw status``, ``layergw logs``.

The job runs ``python -m workflows.cli run <config>`` on the cluster with the config in its
working directory and, by default, this checkout's ``layergw`` and ``workflows`` packages as
``py_modules`` (``--code installed`` uses the version installed on the cluster instead). Its
submission id is derived from the study and its results hash, ``layergw-<study>-<hash>``,
so a second submit of the same study while it runs is refused naming the running job
(``--attach`` follows it instead); after it ended, a resubmit gets the next id
(``...-2``) and resumes from the stored results. A job's working directory is temporary, so
a local store path is refused for a remote cluster (use ``s3://`` or ``gs://``) and made
absolute for one on this machine. Credentials are never shipped: the cluster's own
environment, IAM role or secrets provide them.
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from workflows.config import StudyConfig

log = logging.getLogger(__name__)

PACKAGES = ("layergw", "workflows")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "")
ACTIVE = ("PENDING", "RUNNING")


class SubmitError(ValueError):
    """A study that cannot be submitted as it stands; the message says what to change."""


def is_local_address(address: str) -> bool:
    """Whether a Ray dashboard address points at this machine."""
    host = urlsplit(address if "://" in address else f"http://{address}").hostname or ""
    return host in LOCAL_HOSTS


def job_store(store: str, address: str) -> str:
    """The store URI the job writes to: object stores as they are, a local path made absolute
    for a cluster on this machine, and refused for a remote one."""
    if "://" in store and not store.startswith("file://"):
        return store
    if not is_local_address(address):
        raise SubmitError(f"store {store!r} is a local path, but the Ray cluster at {address} is remote: the job "
                          f"runs in a temporary folder there and its results would vanish; use --store "
                          f"s3://bucket/prefix or gs://bucket/prefix")
    path = store[len("file://"):] if store.startswith("file://") else store
    return str(Path(path).expanduser().resolve())


def base_id(cfg: StudyConfig) -> str:
    """``layergw-<study>-<results hash>``: the same study, the same id."""
    study = re.sub(r"[^A-Za-z0-9_-]+", "-", cfg.study).strip("-") or "study"
    return f"layergw-{study}-{cfg.results_hash()[:12]}"


@dataclass(frozen=True)
class Submitted:
    submission_id: str
    attached: bool


def existing(client, base: str) -> list:
    """The jobs submitted for one study, oldest first."""
    jobs = [j for j in client.list_jobs() if (j.submission_id or "") == base
            or re.fullmatch(re.escape(base) + r"-\d+", j.submission_id or "")]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def submit(cfg: StudyConfig, config_path: Path, address: str, *, store: str | None, overrides: list[str],
           attach: bool = False, code: str = "source", client=None) -> Submitted:
    """Submit a study (or find it running); see the module docstring."""
    from ray.job_submission import JobSubmissionClient

    client = client or JobSubmissionClient(address)
    target = job_store(store or cfg.store, address)
    base = base_id(cfg)
    jobs = existing(client, base)
    active = [j for j in jobs if str(j.status).split(".")[-1] in ACTIVE]
    if active:
        running = active[-1].submission_id
        if attach:
            return Submitted(running, attached=True)
        raise SubmitError(f"this study is already submitted as {running} ({str(active[-1].status).split('.')[-1]}); "
                          f"follow it with `layergw logs {config_path} --address {address} --follow` or submit "
                          f"with --attach")
    submission_id = base if not jobs else f"{base}-{len(jobs) + 1}"
    staging = Path(tempfile.mkdtemp(prefix="layergw-submit-"))
    try:
        shutil.copy(config_path, staging / config_path.name)
        runtime_env: dict = {"working_dir": str(staging)}
        if code == "source":
            root = Path(__file__).resolve().parent.parent
            runtime_env["py_modules"] = [str(root / p) for p in PACKAGES]
        elif code != "installed":
            raise SubmitError(f"--code must be 'source' or 'installed', got {code!r}")
        entrypoint = shlex.join(["python", "-m", "workflows.cli", "run", config_path.name, "--store", target,
                                 "--no-progress", *overrides])
        _submit_when_ready(client, entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id,
                           metadata={"layergw_study": cfg.study, "layergw_run_id": cfg.resolved_run_id})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("submitted %s to %s", submission_id, address)
    return Submitted(submission_id, attached=False)


#: how long a submit waits for a freshly started head's job agent
AGENT_WAIT_S = 90.0


def _submit_when_ready(client, *, wait_s: float = AGENT_WAIT_S, **job) -> None:
    """``client.submit_job``, retried while the cluster has no job agent yet (a head that
    just started answers 500 "No available agent" for a few seconds)."""
    deadline, pause = time.monotonic() + wait_s, 0.5
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as e:
            if "No available agent" not in str(e):
                raise
            if time.monotonic() + pause > deadline:
                raise RuntimeError(
                    f"the cluster still has no job agent after {wait_s:.0f}s ({e}); the head's dashboard agent did "
                    "not start: see dashboard_agent.log in the head's session logs (a common cause is a second "
                    "Ray head on the same machine holding the agent's port, 52365 by default)") from e
            log.info("the cluster's job agent is not ready yet; submitting again in %.1fs", pause)
            time.sleep(pause)
            pause = min(2 * pause, 8.0)


def latest(client, cfg: StudyConfig):
    """The most recent job of a study, or a SubmitError saying none was submitted."""
    jobs = existing(client, base_id(cfg))
    if not jobs:
        raise SubmitError(f"study {cfg.study!r} (submission id {base_id(cfg)}) has not been submitted to this cluster")
    return jobs[-1]


def wait(client, submission_id: str, *, follow: bool = True, poll: float = 1.0, out=print) -> str:
    """Print the job's logs as they grow until it ends; its final status."""
    printed = 0
    while True:
        status = str(client.get_job_status(submission_id)).split(".")[-1]
        if follow:
            logs = client.get_job_logs(submission_id)
            if len(logs) > printed:
                out(logs[printed:].rstrip("\n"))
                printed = len(logs)
        if status not in ACTIVE:
            return status
        time.sleep(poll)

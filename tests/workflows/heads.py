"""A real Ray head for tests: `ray start --head --block` on 127.0.0.1 in its own process
group, every port it would otherwise take at a fixed default chosen free (so a second head on
this machine, another test run, cannot collide with it), stopped with its group."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    process: subprocess.Popen
    address: str  # the GCS address, for --address
    dashboard: str | None  # the Jobs API URL, when started with the dashboard
    log: Path


@contextmanager
def ray_head(log: Path, *, dashboard: bool = False, num_cpus: int = 2, env: dict[str, str] | None = None
             ) -> Iterator[Head]:
    """A running head (ready: the GCS or, with ``dashboard``, the Jobs API answers); ``env`` adds
    to the environment of its processes."""
    tmp = tempfile.mkdtemp(prefix="lgw-h-", dir="/tmp")
    port = free_port()
    fixed = {flag: free_port() for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                             "runtime-env-agent-port", "metrics-export-port",
                                             "ray-client-server-port", "object-manager-port", "node-manager-port")}
    env = _env(tmp, env)
    dash = free_port()
    args = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", f"--temp-dir={tmp}", "--disable-usage-stats",
            *(f"--{flag}={p}" for flag, p in fixed.items())]
    args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}"] if dashboard \
        else ["--include-dashboard=false"]
    head = subprocess.Popen(args, env=env, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    address, url = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}" if dashboard else None
    deadline = time.monotonic() + 120
    while True:
        try:
            if dashboard:
                from ray.job_submission import JobSubmissionClient

                JobSubmissionClient(url).list_jobs()
            else:
                subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env, check=True,
                               capture_output=True, timeout=30)
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or head.poll() is not None:
                os.killpg(head.pid, signal.SIGKILL)
                raise AssertionError("the Ray head did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(1)
    try:
        yield Head(head, address, url, log)
    finally:
        _stop(head)


def _env(tmp: str, extra: dict[str, str] | None) -> dict[str, str]:
    # a node's `python` is the cluster's, with layergw's dependencies: here, this virtualenv's
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tmp,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}
    env.pop("RAY_ADDRESS", None)
    return env


def _stop(process: subprocess.Popen) -> None:
    """Stop a node's process group (already gone is stopped)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def ray_worker_node(head: Head, log: Path, *, num_cpus: int = 1, env: dict[str, str] | None = None
                    ) -> Iterator[subprocess.Popen]:
    """A second node (`ray start --address --block`) joined to ``head``, up once the cluster counts
    its CPUs; ``env`` adds to the environment of its processes."""
    import json

    tmp = tempfile.mkdtemp(prefix="lgw-w-", dir="/tmp")
    args = [str(BIN / "ray"), "start", f"--address={head.address}", "--block", "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", "--disable-usage-stats",
            *(f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                     "runtime-env-agent-port", "metrics-export-port",
                                                     "object-manager-port", "node-manager-port"))]
    node = subprocess.Popen(args, env=_env(tmp, env), start_new_session=True, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    code = "import ray, json; ray.init(address='%s'); print(json.dumps(ray.cluster_resources()))" % head.address
    while True:
        out = subprocess.run([sys.executable, "-c", code], env=_env(tmp, None), capture_output=True, text=True,
                             timeout=120)
        try:
            if json.loads(out.stdout.strip().splitlines()[-1]).get("CPU", 0) >= num_cpus:
                break
        except (ValueError, IndexError):
            pass
        if time.monotonic() > deadline or node.poll() is not None:
            _stop(node)
            raise AssertionError("the Ray worker node did not join:\n" + log.read_text()[-3000:])
        time.sleep(1)
    try:
        yield node
    finally:
        _stop(node)

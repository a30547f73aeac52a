"""Starting or joining Ray, and facts about the code and cluster recorded with results."""
from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import layergw

log = logging.getLogger(__name__)

# One BLAS thread per task (tasks are the parallelism); POT must not pull torch into compare workers.
TASK_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "POT_BACKEND_DISABLE_PYTORCH": "1"}
# Hugging Face's per-load reports and progress bars, once per ablation cell and extraction task,
# drown the study's own progress lines; a value the user set in the environment wins.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def task_env() -> dict[str, str]:
    """The environment every Ray task of a study gets."""
    return {**{k: v for k, v in QUIET_ENV.items() if k not in os.environ}, **TASK_ENV}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address``, or start a local Ray without a dashboard."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": task_env()}
    if not address and os.environ.get("RAY_ADDRESS"):
        address = "auto"  # a Ray job's driver: join the cluster that runs it
    if address:
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, runtime_env=env, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env,
                 logging_level=logging.WARNING, log_to_driver=True)
    log.info("Ray resources: %s", ray.cluster_resources())


class _EveryFewSeconds(logging.Filter):
    """Passes warnings and errors, and at most one INFO line per logger every ``interval`` s."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval, self.last = interval, {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        import time

        now = time.monotonic()
        if now - self.last.get(record.name, -self.interval) < self.interval:
            return False
        self.last[record.name] = now
        return True


def worker_logging(interval: float = 30.0) -> None:
    """Long tasks (training) report to the driver: layergw's INFO lines on the worker's stderr,
    which Ray forwards, thinned to one per logger every ``interval`` seconds."""
    lib = logging.getLogger("layergw")
    if any(getattr(h, "_layergw_worker", False) for h in lib.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_EveryFewSeconds(interval))
    handler._layergw_worker = True
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    lib.propagate = False


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    version = layergw.__version__
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            version += f"+g{out.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version

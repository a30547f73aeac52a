"""Run one study on a simulated multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head
and two worker nodes on this machine, health checks fast enough to notice a dead node in about
a second) and inflict one fault while it runs; used by test_cluster_faults.py as a subprocess,
so the cluster never meets the test session's own Ray.

``python cluster_faults.py MODE STUDY.yaml REPORT.json``, MODE one of:

- ``node``: remove a worker node (no graceful shutdown) while a compare task runs on it;
- ``workers``: SIGKILL the process of a running extraction task, then that of a running
  compare task;
- ``node-train``: remove the worker node running a training task once the task has saved its
  training state (the head has no CPU here, so the task runs on a worker node);
- ``node-ablate``: the same for an ablation cell's fine-tuning.

While the study runs, every visible tile file is read whole at each poll: the report lists any
that was not. The report also says what was killed and whether the study finished.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
               "health_check_timeout_ms": 200, "health_check_failure_threshold": 5}
#: the tasks each mode strikes, in order
TASK_TITLES = {"workers": ["ray::extract_model", "ray::compare_tile_task"], "node": ["ray::compare_tile_task"],
               "node-train": ["ray::train_task"], "node-ablate": ["ray::cell_task"]}
#: where each node-loss mode looks for the saved state that must exist before the node goes
SAVED_STATE = {"node-train": ("train", "/train-state.pt"), "node-ablate": ("", "/train-state.pt")}


def _processes(title: str) -> list[tuple[int, int]]:
    """(pid, parent pid) of every process whose title starts with ``title``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmd.startswith(title):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                out.append((int(d.name), ppid))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _partial_tiles(root: Path) -> list[str]:
    import pyarrow.parquet as pq

    bad = []
    for p in (root / "pairs").rglob("*.parquet") if (root / "pairs").exists() else []:
        try:
            if pq.read_table(p).num_rows == 0:
                bad.append(str(p))
        except Exception as e:  # noqa: BLE001 - anything unreadable is a partial tile
            bad.append(f"{p}: {e}")
    return bad


def main(mode: str, config: str, report: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from workflows.config import load_config
    from workflows.runtime import init_ray
    from workflows.study import run_study

    from layergw.store import ResultStore

    cfg = load_config(config)
    store = ResultStore(cfg.store)
    # the tile checks read a local store; on an object store there are none to watch here
    root = Path(cfg.store) / cfg.study / cfg.resolved_run_id if "://" not in cfg.store else Path("/nonexistent")
    head_cpus = 0 if mode in SAVED_STATE else 1
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False,
                                                            "_system_config": FAST_HEALTH})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    init_ray(cluster.address)
    out: dict = {"mode": mode, "killed": [], "partial": [], "finished": False}
    done = threading.Event()

    def study() -> None:
        try:
            out["tiles_total"] = run_study(cfg, show_progress=False).tiles_total
            out["finished"] = True
        except Exception as e:  # noqa: BLE001 - reported to the test
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            done.set()

    thread = threading.Thread(target=study, daemon=True)
    thread.start()
    todo = list(TASK_TITLES[mode])
    # only this cluster's task processes (children of its raylets), never another Ray's on the machine
    raylets = {n.all_processes["raylet"][0].process.pid for n in [cluster.head_node, *workers]}
    victim_raylet = workers[0].all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + 240
    while not done.is_set() and time.monotonic() < deadline:
        out["partial"] += _partial_tiles(root)
        if todo:
            title = todo[0]
            running = [(pid, ppid) for pid, ppid in _processes(title) if ppid in raylets]
            if mode in SAVED_STATE:
                under, name = SAVED_STATE[mode]
                saved = [f for f in store.list_files(f"{cfg.study}/{under}") if f.endswith(name)]
                nodes = {w.all_processes["raylet"][0].process.pid: w for w in workers}
                on_worker = [(pid, ppid) for pid, ppid in running if ppid in nodes]
                if saved and on_worker:
                    cluster.remove_node(nodes[on_worker[0][1]], allow_graceful=False)
                    out["killed"].append(f"node running {title} (pid {on_worker[0][0]}) after it saved {saved[0]}")
            elif mode == "node":
                on_victim = [pid for pid, ppid in running if ppid == victim_raylet]
                if on_victim:
                    cluster.remove_node(workers[0], allow_graceful=False)
                    out["killed"].append(f"node running {title} (pid {on_victim[0]})")
            elif running:
                os.kill(running[0][0], signal.SIGKILL)
                out["killed"].append(f"{title} pid {running[0][0]}")
            if len(out["killed"]) > len(TASK_TITLES[mode]) - len(todo):
                todo.pop(0)
        time.sleep(0.01 if todo else 0.2)
    done.wait(timeout=max(1.0, deadline - time.monotonic()))
    out["partial"] += _partial_tiles(root)
    Path(report).write_text(json.dumps(out))
    ray.shutdown()
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

"""``layergw bench scale``: a study of many points on a local Ray that advertises a cluster's
width, to see how the driver, the scheduler, the store and the report hold up before a user
meets that size.

One synthetic model (``layergw.families.synthetic``: L points in 4 groups, n inputs of 8
features) is compared by one cheap exact measure (linear CKA), so the work per pair is tiny
and what is measured is everything around it. Ray starts with ``cpus`` logical CPUs (64 by
default) on this machine; its workers are started before the study, so a figure per tile is
the steady cost of dispatching a task, not of starting worker processes (reported apart).
Each size runs into a local folder and into an S3 bucket on a moto server in a child process
on 127.0.0.1 (``moto[server]``, a test extra). Per store and size it reports: planning (listing
finished tiles and building the tasks), tiling, extraction, compare, grouping, diagnostics and
report seconds; the driver's peak RSS over the study; peak tasks in flight and geometry refs;
tiles and their side; tiles per second; the scheduling overhead per tile (the CPU seconds the
driver, the GCS and the raylet spend in the compare stage, over the tiles; Ray's agents and
monitors, which poll on a clock whether tasks run or not, are reported apart, as a share of a
core and per tile); the seconds to list the finished tiles; a resume with 10 % of the tiles deleted (its wall and plan
seconds); the report's size; and whether every pair is stored exactly once.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SCALE_SIZES = (93, 300, 948)
SCALE_STORES = ("local", "s3")
SCALE_CPUS = 64
SCALE_N = 16
RESUME_SHARE = 0.1
_DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """A moto S3 server in a child process on 127.0.0.1, stopped on exit."""

    def __enter__(self) -> str:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise RuntimeError("bench scale's s3 store needs moto[server] (pip install -e '.[test]'), "
                               "or --stores local") from None
        os.environ.update(_DUMMY_AWS)
        self.port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return f"127.0.0.1:{self.port}"
            except OSError:
                time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError("bench scale: the moto S3 server did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _bucket(endpoint: str, name: str) -> str:
    from pyarrow import fs

    fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                     allow_bucket_creation=True).create_dir(name)
    return f"s3://{name}/scale?endpoint_override={endpoint}&scheme=http"


def _reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) afresh (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _process_cpu() -> dict[str, float]:
    """CPU seconds of this process and its descendants by role: driver, scheduler (GCS and
    raylet), agents (Ray's dashboard, runtime-env and log agents, its monitors) and workers
    (the moto server left out); Linux ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        procs[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmd)
    me = os.getpid()
    out = {"driver": procs.get(me, (0, 0.0, ""))[1], "scheduler": 0.0, "agents": 0.0, "workers": 0.0}
    mine, frontier = set(), [me]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in procs.items():
            if ppid == parent and pid not in mine:
                mine.add(pid)
                frontier.append(pid)
    for pid in mine:
        _, cpu, cmd = procs[pid]
        if "moto.server" in cmd:
            continue
        worker = cmd.startswith("ray::") and "Agent" not in cmd or "default_worker.py" in cmd
        binary = cmd.split(" ", 1)[0].rsplit("/", 1)[-1]
        out["workers" if worker else "scheduler" if binary in ("gcs_server", "raylet") else "agents"] += cpu
    return out


class _CompareCPU:
    """Wraps ``workflows.compare.run_items`` to take the CPU by role before and after it."""

    def __enter__(self) -> _CompareCPU:
        import workflows.compare as compare

        self.compare, self.real, self.spent = compare, compare.run_items, {}

        def run_items(*args, **kwargs):
            before = _process_cpu()
            try:
                return self.real(*args, **kwargs)
            finally:
                after = _process_cpu()
                self.spent = {k: after[k] - before.get(k, 0.0) for k in after}

        compare.run_items = run_items
        return self

    def __exit__(self, *exc: object) -> None:
        self.compare.run_items = self.real


def _warm_workers(cpus: int) -> float:
    """Start one worker per logical CPU (a task each, held until all have started); seconds."""
    import ray

    @ray.remote(num_cpus=1)
    def hold(barrier) -> int:
        import layergw.measures  # noqa: F401  what every tile task imports
        import workflows.compare  # noqa: F401
        from layergw.results import PAIRS, table

        table([{k: None for k in PAIRS.names}], PAIRS)  # pyarrow's first conversion sets itself up

        ray.get(barrier.arrive.remote())
        while ray.get(barrier.count.remote()) < cpus:
            time.sleep(0.05)
        return os.getpid()

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self) -> None:
            self.n = 0

        def arrive(self) -> None:
            self.n += 1

        def count(self) -> int:
            return self.n

    t = time.perf_counter()
    barrier = Barrier.remote()
    pids = ray.get([hold.remote(barrier) for _ in range(cpus)])
    log.info("scale: %d workers started in %.1f s", len(set(pids)), time.perf_counter() - t)
    return time.perf_counter() - t


def _config(points: int, store: str, n: int) -> dict:
    return {"study": f"scale{points}", "store": store, "run_id": f"scale{points}",
            "models": [{"id": "synthetic", "family": "synthetic", "checkpoint": "random:0",
                        "params": {"points": points, "groups": 4, "inputs": max(4 * n, 64)}}],
            "inputs": {"n": n, "seed": 0}, "measures": ["cka"], "targets": {"enabled": False}}


def _stored_once(run, key: str, points: int) -> tuple[int, bool]:
    from layergw import layout

    table = run.read_tables(layout.pairs_dir("synthetic", key))
    pairs = list(zip(table.column("layer_a_index").to_pylist(), table.column("layer_b_index").to_pylist()))
    return len(pairs), len(pairs) == len(set(pairs)) == points * (points - 1) // 2


def _report_bytes(run) -> int:
    local = run.local_path()
    if local is not None:
        return sum(f.stat().st_size for f in (local / "report").rglob("*") if f.is_file())
    return sum(len(run.read_bytes(p)) for p in run.list_files("report"))


def _one(points: int, store_uri: str, store_kind: str, cpus: int, n: int) -> dict:

    from layergw import layout
    from layergw.store import ResultStore
    from workflows.config import validate
    from workflows.study import run_study

    cfg = validate(_config(points, store_uri, n))
    key = cfg.measures[0].key
    measured = _reset_peak_rss()
    t = time.perf_counter()
    with _CompareCPU() as cpu:
        run_study(cfg, show_progress=False)
    wall = time.perf_counter() - t
    peak = _peak_rss_mib() if measured else float("nan")
    run = ResultStore(store_uri).child(cfg.study, cfg.resolved_run_id)
    status = run.read_json(layout.RUN)
    timings, usage = status["timings"], status["compare_usage"]
    t = time.perf_counter()
    tiles = run.list_files(layout.pairs_dir("synthetic", key), ".parquet")
    list_s = time.perf_counter() - t
    stored, once = _stored_once(run, key, points)
    cores = os.cpu_count() or 1
    compare_wall = usage["wall_seconds"]
    tiles_n = max(usage["tasks"], 1)
    spent = cpu.spent
    in_tiles = usage.get("task_cpu_seconds", 0.0)
    overhead = (spent["driver"] + spent["scheduler"]) / tiles_n
    report_bytes = _report_bytes(run)

    for path in random.Random(points).sample(tiles, max(1, round(RESUME_SHARE * len(tiles)))):
        run.delete(path)
    t = time.perf_counter()
    run_study(cfg, show_progress=False)
    resume_s = time.perf_counter() - t
    resumed = run.read_json(layout.RUN)
    _, once_after = _stored_once(run, key, points)
    return {"store": store_kind, "points": points, "pairs": points * (points - 1) // 2, "n": n, "cpus": cpus,
            "cores": cores, "wall_s": wall, "driver_peak_mib": peak, "plan_s": timings.get("plan"),
            "tiling_s": timings.get("tiling"), "extract_s": timings.get("extract"),
            "compare_s": compare_wall, "group_s": timings.get("group"), "diagnose_s": timings.get("diagnose"),
            "report_s": timings.get("report"), "tiles": usage["tasks"], "tile_side": usage["tile_sizes"][key],
            "peak_in_flight": usage["peak_in_flight"], "peak_refs": usage["peak_refs"],
            "tiles_per_s": usage["tasks"] / compare_wall if compare_wall else None,
            "overhead_ms_per_tile": 1000 * overhead,
            "driver_ms_per_tile": 1000 * spent["driver"] / tiles_n,
            "scheduler_ms_per_tile": 1000 * spent["scheduler"] / tiles_n,
            "agents_ms_per_tile": 1000 * spent["agents"] / tiles_n,
            "agents_core_share": spent["agents"] / compare_wall if compare_wall else None,
            "workers_outside_tiles_ms_per_tile": 1000 * (spent["workers"] - in_tiles) / tiles_n,
            "tile_cpu_ms": 1000 * in_tiles / tiles_n, "list_s": list_s, "listed_tiles": len(tiles),
            "resume_s": resume_s, "resume_plan_s": resumed["timings"].get("plan"),
            "resume_tiles": resumed["tiles_total"] - resumed["tiles_reused"], "report_mib": report_bytes / 2**20,
            "pairs_stored": stored, "stored_once": bool(once and once_after)}


def bench_scale(sizes: tuple[int, ...] = SCALE_SIZES, stores: tuple[str, ...] = SCALE_STORES, cpus: int = SCALE_CPUS,
                n: int = SCALE_N) -> tuple[list[dict], list[dict]]:
    """(rows, history figures) of the scale suite (see the module docstring)."""
    import ray

    from workflows.bench import _figure
    from workflows.runtime import init_ray

    unknown = [s for s in stores if s not in SCALE_STORES]
    if unknown:
        raise ValueError(f"stores must be among {', '.join(SCALE_STORES)}, got {', '.join(unknown)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="layergw-bench-scale-") as tmp:
        moto = MotoServer() if "s3" in stores else None
        endpoint = moto.__enter__() if moto else None
        try:
            if ray.is_initialized():
                raise RuntimeError("bench scale starts its own Ray with a cluster's width; run it in a fresh process")
            init_ray(None, cpus)
            warm = _warm_workers(cpus)
            for points in sizes:
                for kind in stores:
                    uri = f"{tmp}/{kind}" if kind == "local" else _bucket(endpoint, f"scale{points}")
                    row = _one(points, uri, kind, cpus, n)
                    rows.append({**row, "workers_start_s": warm})
                    log.info("scale: %s %d points: %s", kind, points, row)
        finally:
            ray.shutdown()
            if moto:
                moto.__exit__(None, None, None)
    figures = []
    for r in rows:
        tag = f"{r['points']} points, {r['store']}"
        figures += [_figure("scale", f"driver peak RSS, {tag}", r["driver_peak_mib"], "MiB", "lower"),
                    _figure("scale", f"scheduling overhead per tile, {tag}", r["overhead_ms_per_tile"], "ms", "lower"),
                    _figure("scale", f"plan, {tag}", r["plan_s"], "s", "lower"),
                    _figure("scale", f"resume with 10% of tiles left, {tag}", r["resume_s"], "s", "lower"),
                    _figure("scale", f"grouping, {tag}", r["group_s"], "s", "lower")]
    return rows, figures

"""``layergw bench extract-shards``: one model's extraction split over input ranges.

The real MiniLM (``builtin:minilm``, every block output and the embeddings) runs 4,000 SST-2
training sentences (``../shared/data``, or the hub) in 1 and 2 shards on a local Ray of the
machine's CPUs (its workers started and torch imported by a small extraction first), then in 4 and 8 shards on a simulated cluster of four nodes of two
CPUs each (``ray.cluster_utils.Cluster``; on one machine the nodes share its cores, so the
figure there is where the shards ran, not a speed-up). Each row: shards, wall seconds, the
speed-up over one shard on the same Ray, the nodes the shards ran on, and the largest absolute
difference from the one-task values.
"""
from __future__ import annotations

import logging
import tempfile
import time

import numpy as np

log = logging.getLogger(__name__)

LOCAL_SHARDS = (1, 2)
CLUSTER_SHARDS = (1, 4, 8)


def _spec():
    from workflows.config import ModelSpec

    return ModelSpec(id="minilm", family="hf", checkpoint="builtin:minilm",
                     params={"points": "blocks", "pooling": "cls", "max_length": 128,
                             "data": {"source": "sst2", "split": "train", "max_rows": N}})


N = 4000


def _timed(shards_list: tuple[int, ...], where: str, tmp: str) -> list[dict]:
    from layergw import layout
    from layergw.store import ResultStore
    from workflows.config import InputsSpec
    from workflows.extract import run_extract

    rows, base = [], None
    run_extract([_spec()], InputsSpec(n=64, seed=0), ResultStore(f"{tmp}/{where}-warm"), shards=max(shards_list))
    for shards in shards_list:
        store = ResultStore(f"{tmp}/{where}-{shards}")
        t = time.perf_counter()
        man = run_extract([_spec()], InputsSpec(n=N, seed=0), store, shards=shards)["minilm"]
        wall = time.perf_counter() - t
        reps = [store.read_array(layout.rep("minilm", p.layer_index)) for p in man.points]
        if base is None:
            base = (wall, reps)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(base[1], reps))
        nodes = len({s["node"] for s in man.describe.get("extract_shards", [])}) or 1
        rows.append({"ray": where, "shards": shards, "inputs": man.n, "points": len(man.points), "wall_s": wall,
                     "speedup": base[0] / wall, "nodes_used": nodes, "max_abs_diff": diff})
        log.info("extract-shards: %s", rows[-1])
    return rows


def bench_extract_shards() -> tuple[list[dict], list[dict]]:
    """(rows, history figures): see the module docstring."""
    import ray
    from ray.cluster_utils import Cluster

    from workflows.bench import _figure
    from workflows.runtime import init_ray

    if ray.is_initialized():
        raise RuntimeError("bench extract-shards starts its own Ray; run it in a fresh process")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="layergw-bench-shards-") as tmp:
        init_ray(None, None)
        try:
            rows += _timed(LOCAL_SHARDS, "local", tmp)
        finally:
            ray.shutdown()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
        for _ in range(3):
            cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address)
        try:
            rows += _timed(CLUSTER_SHARDS, "cluster", tmp)
        finally:
            ray.shutdown()
            cluster.shutdown()
    two = next(r for r in rows if r["ray"] == "local" and r["shards"] == 2)
    return rows, [_figure("extract-shards", "MiniLM extraction speed-up, 2 shards over 1 (local Ray)", two["speedup"],
                          "x", "higher")]

"""Run by test_extract_shards.py in a subprocess: one model extracted in 1, 4 and 8 shards on a
simulated cluster (a head and three worker nodes on this machine); prints a JSON report."""
from __future__ import annotations

import json
import sys

import numpy as np
import ray
from ray.cluster_utils import Cluster


def main(checkpoint: str, store_root: str) -> None:
    from layergw import layout
    from layergw.store import ResultStore
    from workflows.config import InputsSpec, ModelSpec
    from workflows.extract import run_extract

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    for _ in range(3):
        cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    try:
        spec = ModelSpec(id="m", checkpoint=checkpoint)
        inputs = InputsSpec(n=96, seed=0)
        out: dict = {"nodes": len(ray.nodes())}
        reps = {}
        for shards in (1, 4, 8):
            store = ResultStore(f"{store_root}/s{shards}")
            man = run_extract([spec], inputs, store, shards=shards)["m"]
            reps[shards] = [store.read_array(layout.rep("m", p.layer_index)) for p in man.points]
            out[str(shards)] = {"nodes_used": len({s["node"] for s in man.describe.get("extract_shards", [])}),
                                "shards": len(man.describe.get("extract_shards", [])), "points": len(man.points),
                                "left": store.list_files("reps/m/shards")}
        out["max_abs_diff"] = {str(s): max(float(np.abs(a - b).max()) for a, b in zip(reps[1], reps[s]))
                               for s in (4, 8)}
        out["shapes_equal"] = all(a.shape == b.shape for s in (4, 8) for a, b in zip(reps[1], reps[s]))
        print(json.dumps(out))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""One model's extraction in shards: the input ranges, values equal to the one-task extraction,
the shard files gone once assembled, and shards spread over the nodes of a simulated cluster."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workflows.extract import shard_bounds

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n,shards", [(10, 3), (96, 8), (5, 5), (3, 8), (1000, 1)])
def test_shards_cover_the_inputs_in_order_in_near_equal_nonempty_ranges(n: int, shards: int) -> None:
    bounds = shard_bounds(n, shards)
    assert bounds[0][0] == 0 and bounds[-1][1] == n and len(bounds) == min(n, shards)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.long  # five extraction tasks, each starting torch in a fresh worker (about a minute)
@pytest.mark.ray
def test_three_shards_give_the_one_task_values_targets_and_manifest(tiny_checkpoints, ray_local, tmp_path) -> None:
    from layergw import layout
    from layergw.store import ResultStore
    from workflows.config import InputsSpec, ModelSpec
    from workflows.extract import run_extract

    spec = ModelSpec(id="tiny", checkpoint=tiny_checkpoints["tiny_fmod3"])
    inputs = InputsSpec(n=50, seed=0)
    one, three = ResultStore(str(tmp_path / "one")), ResultStore(str(tmp_path / "three"))
    a = run_extract([spec], inputs, one)["tiny"]
    b = run_extract([spec], inputs, three, shards=3)["tiny"]
    assert [(p.layer, p.dim, p.constant) for p in a.points] == [(p.layer, p.dim, p.constant) for p in b.points]
    assert (a.n, a.targets, a.n_blocks) == (b.n, b.targets, b.n_blocks)
    assert [(s["lo"], s["hi"]) for s in b.describe["extract_shards"]] == shard_bounds(50, 3)
    for p in a.points:
        x, y = one.read_array(layout.rep("tiny", p.layer_index)), three.read_array(layout.rep("tiny", p.layer_index))
        assert x.dtype == y.dtype == np.float32
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
    for t in a.targets:
        np.testing.assert_array_equal(one.read_array(layout.target_rep("tiny", t)),
                                      three.read_array(layout.target_rep("tiny", t)))
    assert three.list_files("reps/tiny/shards") == []
    again = run_extract([spec], inputs, three, shards=3)["tiny"]
    assert again.describe == b.describe  # a finished model is reused, not extracted again


@pytest.mark.long
@pytest.mark.ray
def test_four_and_eight_shards_spread_over_a_simulated_cluster_and_equal_one_task(tiny_checkpoints,
                                                                                tmp_path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("shard_cluster.py")),
                           tiny_checkpoints["tiny_fmod3"], str(tmp_path / "store")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["nodes"] == 4 and out["shapes_equal"]
    for shards in ("4", "8"):
        assert out[shards]["shards"] == int(shards) and out[shards]["left"] == []
        assert out[shards]["nodes_used"] >= 2, out
        assert out["max_abs_diff"][shards] <= 1e-5

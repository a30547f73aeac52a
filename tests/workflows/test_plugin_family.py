"""A model family of one's own as a plugin: the example package (examples/torch_module) installed
into a folder of its own, found by its ``layergw.families`` entry point in the driver and in the
worker node of a real two-node Ray cluster, with no code shipped from the driver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.workflows.heads import ray_head, ray_worker_node

pytestmark = pytest.mark.long  # a real two-node cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed (with its entry point) into a site folder of its own."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(REPO / "examples" / "torch_module")], check=True, capture_output=True)
    assert list(site.glob("layergw_tinynet-*.dist-info/entry_points.txt"))
    return site


@pytest.mark.ray
def test_a_plugin_family_runs_on_a_real_cluster_whose_worker_finds_it_by_itself(plugin_site: Path,
                                                                                   tmp_path: Path) -> None:
    config = {"study": "plugin", "store": str(tmp_path / "store"),
              "models": [{"id": "tiny", "family": "tinynet", "checkpoint": "random:0", "params": {"depth": 3}}],
              "inputs": {"n": 32, "seed": 0}, "measures": ["cka"], "targets": {"enabled": False}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    with_plugin = {"PYTHONPATH": str(plugin_site)}
    # the head runs no task (0 CPUs) and does not have the plugin: every task runs on the worker node
    with ray_head(tmp_path / "head.log", num_cpus=0) as head, \
            ray_worker_node(head, tmp_path / "worker.log", num_cpus=2, env=with_plugin):
        env = {**os.environ, **with_plugin, "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-m", "workflows.cli", "run", str(path), "--address", head.address,
                               "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = list((tmp_path / "store" / "plugin").iterdir())
    (run,) = [r for r in runs if r.is_dir()]
    manifest = json.loads((run / "reps" / "tiny" / "done.json").read_text())
    assert manifest["describe"]["family"] == "torch" and manifest["describe"]["factory"] == "tinynet:build"
    points = ["blocks.0:in", "blocks.0", "blocks.1", "blocks.2"]
    assert [p["layer"] for p in manifest["points"]] == points
    import pyarrow.parquet as pq

    pairs = pq.read_table(run / "pairs" / "tiny").to_pandas()
    assert len(pairs) == 6 and pairs["value"].notna().all()  # every pair of the 4 points, computed on the worker
    assert set(pq.read_table(run / "groups.parquet").to_pandas()["layer"]) == set(points)

"""Extraction stage: one Ray task per model writes every point's (n, d) float32 to the store.

``reps/<model>/done.json`` is written last, so its presence means the model is complete
and a rerun skips it.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import ray

from workflows.config import ModelSpec, ProbeSpec

log = logging.getLogger(__name__)


def reps_dir(model_id: str) -> str:
    return f"reps/{model_id}"


@ray.remote(num_cpus=1)
def extract_model(spec: ModelSpec, probe: ProbeSpec, store) -> dict:
    """Extract, validate and store one model's representations and targets; return its manifest.

    Points are numbered by their position among the selected points (depth order), which
    is the model's own numbering when all points are taken.
    """
    from layergw import measures, models
    from layergw.data.modsum import probe_indices

    base = reps_dir(spec.id)
    if store.exists(f"{base}/done.json"):
        manifest = store.read_json(f"{base}/done.json")
        manifest["skipped"] = True
        return manifest
    t0 = time.perf_counter()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = spec.checkpoint
    with tempfile.TemporaryDirectory(prefix="layergw-ckpt-") as tmp:
        if checkpoint.startswith("train:"):
            from workflows.train import local_checkpoint

            checkpoint = local_checkpoint(store, checkpoint, spec.family, Path(tmp))
        adapter = models.get(spec.family, checkpoint=checkpoint, **spec.params)
    points = models.with_pooling(models.select_points(adapter.points(), spec.points, model=spec.id), spec.pooling)
    indices = probe_indices(adapter.n_inputs(), probe.n, probe.seed)
    reps = adapter.extract(indices, points, device=device)
    rows = []
    for k, p in enumerate(points):
        X = reps[p.name]
        measures.check_representation(X, label=f"model {spec.id!r}, point {p.name!r}")
        store.write_array(f"{base}/{k}.npy", X)
        rows.append({"model": spec.id, "layer": p.name, "layer_index": k, "display": p.display,
                     "block": p.block if p.block is not None else -1, "role": p.role, "dim": int(X.shape[1])})
    targets = adapter.targets(indices) if spec.targets else {}
    for name, Y in targets.items():
        store.write_array(f"{base}/targets/{name}.npy", Y)
    manifest = {"model": spec.id, "n": int(len(indices)), "probe_seed": probe.seed, "points": rows,
                "targets": sorted(targets), "device": device, "seconds": time.perf_counter() - t0,
                "describe": adapter.describe()}
    store.write_json(f"{base}/done.json", manifest)
    manifest["skipped"] = False
    return manifest


def run_extract(specs: list[ModelSpec], probe: ProbeSpec, store, num_gpus: float = 0.0) -> dict[str, dict]:
    """Extract every model in parallel; model id -> manifest."""
    task = extract_model.options(num_gpus=num_gpus) if num_gpus else extract_model
    refs = {s.id: task.remote(s, probe, store) for s in specs}
    out = {}
    for mid, ref in refs.items():
        out[mid] = ray.get(ref)
        state = "already extracted, skipped" if out[mid]["skipped"] else f"extracted in {out[mid]['seconds']:.1f}s"
        log.info("%s: %d points, n=%d, %s", mid, len(out[mid]["points"]), out[mid]["n"], state)
    return out

"""Train stage: jobs that make checkpoints (modular sum, fine-tuning, images, small LMs) run as
Ray tasks before extraction; their checkpoints live in the run's store.

Layout under the run: ``train/<job>/seed-<s>/<label>/`` per saved checkpoint, ``label``
``final`` or ``step-<k>``, each with a ``metrics.json`` (at least ``step``; accuracy and F1
where the job evaluates), and ``train/<job>/seed-<s>/done.json`` written last, so a rerun
skips finished jobs. Models name them as ``checkpoint: train:<job>`` (the last checkpoint),
``train:<job>/<label>`` or ``train:<job>/*`` (every checkpoint: a training-dynamics series).
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

import ray

from workflows.config import ConfigError, ModelSpec, StudyConfig, TrainJob

log = logging.getLogger(__name__)

PREFIX = "train:"
_STEP = re.compile(r"^step-(\d+)$")


def seed_dir(job: str, seed: int) -> str:
    return f"train/{job}/seed-{seed}"


# -- what each kind of job runs ------------------------------------------------------------


def _run_modsum(job: TrainJob, seed: int, out: Path, device: str) -> None:
    from layergw.training import ModSumTrainSpec, save_checkpoint, train_modsum

    try:
        spec = ModSumTrainSpec(**{"model_id": job.id, **job.params, "seed": seed})
    except TypeError as e:
        raise ConfigError(f"train job {job.id!r} (modsum): {e}") from None
    model, record = train_modsum(spec, device=device, state_path=out / "state.pt", save_every=500)
    save_checkpoint(model, record, out / "final")
    last = record["phases"][-1]
    epochs = sum(p["epochs"] for p in record["phases"])
    _write_metrics(out / "final", {"step": epochs, "accuracy": last["val_acc"], "train_accuracy": last["train_acc"]})
    (out / "state.pt").unlink(missing_ok=True)


RUNNERS: dict[str, Callable[[TrainJob, int, Path, str], None]] = {"modsum": _run_modsum}


def _write_metrics(folder: Path, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))


# -- the stage -----------------------------------------------------------------------------


@ray.remote(num_cpus=1)
def train_task(store, job: TrainJob, seed: int) -> dict:
    """Run one job for one seed unless its ``done.json`` exists; return that record."""
    base = seed_dir(job.id, seed)
    if store.exists(f"{base}/done.json"):
        return {**store.read_json(f"{base}/done.json"), "skipped": True}
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    local = store.local_path()
    if local is not None:  # work in place: a killed job resumes from what it left
        out = local / base
        out.mkdir(parents=True, exist_ok=True)
        RUNNERS[job.kind](job, seed, out, device)
    else:
        with tempfile.TemporaryDirectory(prefix=f"layergw-train-{job.id}-") as tmp:
            RUNNERS[job.kind](job, seed, Path(tmp), device)
            store.upload_dir(tmp, base)
    labels = list_labels(store, job.id, seed)
    if not labels:
        raise RuntimeError(f"train job {job.id!r} seed {seed} saved no checkpoint with metrics.json under {store.url(base)}")
    record = {"job": job.id, "kind": job.kind, "seed": seed, "labels": labels, "device": device,
              "seconds": time.perf_counter() - t0}
    store.write_json(f"{base}/done.json", record)
    log.info("train job %s seed %d: %d checkpoints in %.0fs", job.id, seed, len(labels), record["seconds"])
    return {**record, "skipped": False}


def run_train(cfg: StudyConfig, run, num_gpus: float = 0.0) -> dict[str, dict]:
    """Every (job, seed) of the config, in parallel; raises naming the jobs that failed."""
    refs = {}
    for job in cfg.train:
        gpus = job.num_gpus if job.num_gpus is not None else (num_gpus if job.kind != "modsum" else 0.0)
        task = train_task.options(num_gpus=gpus) if gpus else train_task
        for seed in job.seeds:
            refs[f"{job.id}/seed-{seed}"] = task.remote(run, job, seed)
    out, failed = {}, []
    for key, ref in refs.items():
        try:
            out[key] = ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            failed.append(f"{key}: {type(cause).__name__}: {cause}")
    if failed:
        raise RuntimeError("train jobs failed (finished ones are kept and skipped on rerun):\n  " + "\n  ".join(failed))
    return out


def list_labels(store, job: str, seed: int) -> list[str]:
    """Saved checkpoint labels of one job and seed, in training order (step, then final)."""
    base = seed_dir(job, seed)
    labels = {p[len(base) + 1:].split("/")[0] for p in store.list_files(base, "metrics.json")
              if p.count("/") == base.count("/") + 2}
    return sorted(labels, key=_label_order)


def _label_order(label: str) -> tuple[int, int, str]:
    m = _STEP.match(label)
    if m:
        return (0, int(m.group(1)), label)
    return (1, 0, label)


# -- models that name trained checkpoints -----------------------------------------------------


def parse_ref(checkpoint: str) -> tuple[str, str | None]:
    """``train:<job>[/<label>|/*]`` -> (job, label or '*' or None for the last checkpoint)."""
    body = checkpoint[len(PREFIX):]
    job, _, label = body.partition("/")
    return job, (label or None)


def expand_models(cfg: StudyConfig, run) -> tuple[list[ModelSpec], dict[str, list[dict]]]:
    """Models with every ``seeds`` list and ``train:`` reference resolved to one checkpoint each.

    Returns the models and the series: for each configured model id, the models it became,
    with seed, label, step and the checkpoint's metrics (for dynamics and seed agreement).
    """
    models: list[ModelSpec] = []
    series: dict[str, list[dict]] = {}
    for spec in cfg.models:
        seeds = spec.seeds if spec.seeds else [spec.seed]
        members = []
        for seed in seeds:
            sid = f"{spec.id}-s{seed}" if spec.seeds else spec.id
            if not spec.checkpoint.startswith(PREFIX):
                models.append(spec.model_copy(update={"id": sid, "seed": seed, "seeds": None}))
                members.append({"model": sid, "seed": seed, "label": spec.checkpoint_label, "step": None, "metrics": {}})
                continue
            job, label = parse_ref(spec.checkpoint)
            labels = list_labels(run, job, seed)
            if not labels:
                raise ConfigError(f"model {spec.id!r}: train job {job!r} has no checkpoints for seed {seed} "
                                  f"under {run.url(seed_dir(job, seed))}")
            if label is None:
                chosen = [labels[-1]]
            elif label == "*":
                chosen = labels
            elif label in labels:
                chosen = [label]
            else:
                raise ConfigError(f"model {spec.id!r}: train job {job!r} seed {seed} has no checkpoint {label!r}; "
                                  f"saved: {', '.join(labels)}")
            for lab in chosen:
                mid = f"{sid}@{lab}" if label == "*" else sid
                metrics = run.read_json(f"{seed_dir(job, seed)}/{lab}/metrics.json")
                models.append(spec.model_copy(update={
                    "id": mid, "seed": seed, "seeds": None, "checkpoint": f"{PREFIX}{job}/seed-{seed}/{lab}",
                    "checkpoint_label": lab}))
                members.append({"model": mid, "seed": seed, "label": lab, "step": metrics.get("step"),
                                "metrics": metrics})
        series[spec.id] = members
    return models, series


def local_checkpoint(store, checkpoint: str, family: str, workdir: Path) -> str:
    """The local checkpoint a family loads for a resolved ``train:<job>/seed-<s>/<label>``."""
    prefix = "train/" + checkpoint[len(PREFIX):]
    local = store.local_path()
    folder = local / prefix if local is not None else store.download_dir(prefix, workdir / prefix)
    if family == "hf":
        return str(folder)
    weights = sorted(Path(folder).glob("*.safetensors"))
    if len(weights) != 1:
        raise ConfigError(f"checkpoint {checkpoint!r}: expected one .safetensors file in {folder}, found "
                          f"{[w.name for w in weights]}")
    return str(weights[0])


def job_fingerprint(job: TrainJob) -> str:
    """What determines a job's checkpoints, for run ids."""
    import hashlib

    return hashlib.sha256(json.dumps(job.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def check_refs(cfg: StudyConfig) -> None:
    """Every ``train:`` checkpoint names a job of the config, with a seed the job trains."""
    jobs = {j.id: j for j in cfg.train}
    for i, spec in enumerate(cfg.models):
        if not spec.checkpoint.startswith(PREFIX):
            continue
        job, _ = parse_ref(spec.checkpoint)
        if job not in jobs:
            from layergw.registry import suggest

            raise ConfigError(f"models[{i}] ({spec.id}): checkpoint {spec.checkpoint!r} names no train job"
                              f"{suggest(job, list(jobs))}; train jobs: {', '.join(jobs) or '(none)'}")
        missing = sorted(set(spec.seeds or [spec.seed]) - set(jobs[job].seeds))
        if missing:
            raise ConfigError(f"models[{i}] ({spec.id}): train job {job!r} trains seeds {jobs[job].seeds}, "
                              f"not {missing}")



"""Train stage: jobs that make checkpoints (modular sum, fine-tuning, images, small LMs) run as
Ray tasks before extraction; their checkpoints live in the study's folder of the store.

A job names a model family and one of its recipes (``Family.train``), which writes one
folder per checkpoint with ``metrics.json`` in the shared ``Metrics`` shape. Layout under
``<store>/<study>/`` (``layergw.layout.train_seed_dir``): ``train/<job>/<job hash>/seed-<s>/<label>/``
per saved checkpoint, ``label`` ``final`` or ``step-<k>``, and ``.../seed-<s>/done.json`` written
last, so a rerun reuses finished jobs. The folder is the study's, not a run's: a run with
other inputs or other points reuses the trained checkpoints; a changed job (another hash)
trains again. Models name them as ``checkpoint: train:<job>`` (the last checkpoint),
``train:<job>/<label>`` or ``train:<job>/*`` (every checkpoint: a training-dynamics series).
"""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import ray

from layergw import layout
from layergw.families import METRICS_FILE, Family
from workflows.config import _KIND_RECIPES, ConfigError, ModelSpec, StudyConfig, TrainJob
from workflows.sync import working_folder

log = logging.getLogger(__name__)

PREFIX = "train:"
_STEP = re.compile(r"^step-(\d+)$")


def seed_dir(job_key: str, seed: int) -> str:
    """``job_key`` is ``<job id>/<job hash>`` (see :func:`job_key`)."""
    return layout.train_seed_dir(job_key, seed)


def job_key(job: TrainJob) -> str:
    return f"{job.id}/{job_fingerprint(job)}"


@ray.remote(num_cpus=1)
def train_task(store, job: TrainJob, seed: int) -> dict:
    """Run one job for one seed unless its ``done.json`` exists; return that record.

    ``store`` is the study's folder (the parent of the run folders)."""
    from layergw import families
    from layergw.torchkit.device import resolve_device
    from workflows.runtime import worker_logging

    worker_logging()
    base = seed_dir(job_key(job), seed)
    done = layout.train_done(job_key(job), seed)
    if store.exists(done):
        return {**store.read_json(done), "reused": True}
    device = resolve_device("auto")
    family = families.get(job.family)
    t0 = time.perf_counter()
    try:
        with working_folder(store, base, f"train-{job.id}") as out:  # a killed or lost job resumes from it
            family.train(job.recipe, job.id, job.params, seed, out, device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    labels = list_labels(store, job_key(job), seed)
    if not labels:
        raise RuntimeError(f"train job {job.id!r} seed {seed} saved no checkpoint with metrics.json under {store.url(base)}")
    record = {"job": job.id, "family": job.family, "recipe": job.recipe, "seed": seed, "labels": labels,
              "device": device, "seconds": time.perf_counter() - t0}
    store.write_json(done, record)
    log.info("train job %s seed %d: %d checkpoints in %.0fs", job.id, seed, len(labels), record["seconds"])
    return {**record, "reused": False}


def run_train(cfg: StudyConfig, run, num_gpus: float = 0.0) -> dict[str, dict]:
    """Every (job, seed) of the config, in parallel; raises naming the jobs that failed."""
    study = run.parent()
    refs = {}
    for job in cfg.train:
        gpus = job.num_gpus if job.num_gpus is not None else (num_gpus if job.family != "modsum" else 0.0)
        task = train_task.options(num_gpus=gpus) if gpus else train_task
        for seed in job.seeds:
            refs[f"{job.id}/seed-{seed}"] = task.remote(study, job, seed)
    from workflows.progress import Progress

    progress = Progress("train", len(refs), 0, "jobs", interval=0.0)
    keys = {ref: key for key, ref in refs.items()}
    out, failed, pending = {}, [], list(refs.values())
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        key = keys[ready[0]]
        try:
            out[key] = ray.get(ready[0])
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            failed.append(f"{key}: {type(cause).__name__}: {cause}")
        progress.update()
    out = {key: out[key] for key in refs if key in out}
    if failed:
        raise RuntimeError("train jobs failed (finished ones are kept and reused on rerun):\n  " + "\n  ".join(failed))
    return out


def list_labels(store, key: str, seed: int) -> list[str]:
    """Saved checkpoint labels of one job and seed, in training order (step, then final)."""
    base = seed_dir(key, seed)
    labels = {p[len(base) + 1:].split("/")[0] for p in store.list_files(base, METRICS_FILE)
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
    study = run.parent()
    keys = {j.id: job_key(j) for j in cfg.train}
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
            labels = list_labels(study, keys[job], seed)
            if not labels:
                raise ConfigError(f"model {spec.id!r}: train job {job!r} has no checkpoints for seed {seed} "
                                  f"under {study.url(seed_dir(keys[job], seed))}")
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
                metrics = study.read_json(f"{seed_dir(keys[job], seed)}/{lab}/{METRICS_FILE}")
                models.append(spec.model_copy(update={
                    "id": mid, "seed": seed, "seeds": None, "checkpoint": f"{PREFIX}{keys[job]}/seed-{seed}/{lab}",
                    "checkpoint_label": lab}))
                members.append({"model": mid, "seed": seed, "label": lab, "step": metrics.get("step"),
                                "metrics": metrics})
        series[spec.id] = members
    return models, series


def local_checkpoint(store, checkpoint: str, family: Family, workdir: Path) -> str:
    """The local checkpoint a family loads for a resolved ``train:<job>/<hash>/seed-<s>/<label>``;
    ``store`` is the run's folder."""
    store = store.parent()
    prefix = f"{layout.TRAIN_DIR}/{checkpoint[len(PREFIX):]}"
    local = store.local_path()
    folder = local / prefix if local is not None else store.download_dir(prefix, workdir / prefix)
    try:
        return family.checkpoint_in(Path(folder))
    except ValueError as e:
        raise ConfigError(f"checkpoint {checkpoint!r}: {e}") from None


def job_fingerprint(job: TrainJob) -> str:
    """What determines a job's checkpoints, for run ids."""
    import hashlib

    d = job.model_dump(mode="json")
    kind = {v: k for k, v in _KIND_RECIPES.items()}.get((job.family, job.recipe))
    if kind is not None:  # the form before families trained: checkpoints trained then are reused
        d = {"id": d["id"], "kind": kind, "params": d["params"], "seeds": d["seeds"], "num_gpus": d["num_gpus"]}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_jobs(cfg: StudyConfig) -> None:
    """Every train job names a family and recipe that exist, and every ``train:`` checkpoint
    names a job of the config, with a seed the job trains."""
    from layergw import families

    for k, job in enumerate(cfg.train):
        try:
            families.get(job.family).recipe_name(job.recipe)
        except ValueError as e:
            raise ConfigError(f"train[{k}] ({job.id}): {e}") from None
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



"""Train stage: jobs that make checkpoints (modular sum, fine-tuning, images, small LMs) run as
Ray tasks before extraction; their checkpoints live in the study's folder of the store.

Layout under ``<store>/<study>/``: ``train/<job>/<job hash>/seed-<s>/<label>/`` per saved
checkpoint, ``label`` ``final`` or ``step-<k>``, each with a ``metrics.json`` (at least
``step``; accuracy and F1 where the job evaluates), and ``.../seed-<s>/done.json`` written
last, so a rerun skips finished jobs. The folder is the study's, not a run's: a run with
another probe set or other points reuses the trained checkpoints; a changed job (another
hash) trains again. Models name them as ``checkpoint: train:<job>`` (the last checkpoint),
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


def seed_dir(job_key: str, seed: int) -> str:
    """``job_key`` is ``<job id>/<job hash>`` (see :func:`job_key`)."""
    return f"train/{job_key}/seed-{seed}"


def job_key(job: TrainJob) -> str:
    return f"{job.id}/{job_fingerprint(job)}"


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


def _spec(cls, job: TrainJob, **fixed):
    """The kind's spec dataclass from the job's params; a bad key names the valid ones."""
    import dataclasses

    from layergw.registry import suggest

    valid = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    params = {k: v for k, v in job.params.items() if k not in ("train", "eval", "data")}
    for key in params:
        if key not in valid:
            raise ConfigError(f"train job {job.id!r} ({job.kind}): no parameter {key!r}{suggest(key, valid)}; "
                              f"valid: {', '.join(valid)}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    try:
        return cls(**params, **fixed)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train job {job.id!r} ({job.kind}): {e}") from None


def _text(job: TrainJob, which: str, default: dict) -> object:
    from layergw.data.text import load_text

    spec = job.params.get(which, default)
    if not isinstance(spec, dict) or "source" not in spec:
        raise ConfigError(f"train job {job.id!r}: params.{which} must be a mapping with at least 'source' "
                          f"(load_text arguments, e.g. {{source: sst2, split: train, max_rows: 4000}}), got {spec!r}")
    return load_text(**spec)


def _run_finetune(job: TrainJob, seed: int, out: Path, device: str) -> None:
    """Sequence-classification fine-tuning (layergw.finetune): a checkpoint per saved step."""
    from layergw.finetune import FineTuneSpec, finetune

    spec = _spec(FineTuneSpec, job, id=out.name, seed=seed, device=device)
    train = _text(job, "train", {"source": "sst2", "split": "train"})
    evaluation = _text(job, "eval", {"source": "sst2", "split": "dev"})
    finetune(spec, train, evaluation, out.parent)
    for metrics_path in out.glob("step-*/metrics.json"):
        m = json.loads(metrics_path.read_text())
        m.setdefault("accuracy", m.get("eval_accuracy"))
        m.setdefault("f1", m.get("eval_f1"))
        metrics_path.write_text(json.dumps(m, indent=1, sort_keys=True))


def _run_image(job: TrainJob, seed: int, out: Path, device: str) -> None:
    """ResNet9 on an image classification set (layergw.image_training)."""
    from layergw.image_training import ImageTrainSpec, train_image_classifier

    spec = _spec(ImageTrainSpec, job, model_id=job.id, seed=seed, device=device)
    record = train_image_classifier(spec, out / "final", overwrite=True)
    _write_metrics(out / "final", {"step": spec.epochs, "accuracy": record["final_test_acc"],
                                   "train_accuracy": record["final_train_acc"]})


def _run_lm(job: TrainJob, seed: int, out: Path, device: str) -> None:
    """A small causal LM on local text (layergw.lm_training)."""
    from layergw.lm_training import CausalLMSpec, train_causal_lm

    spec = _spec(CausalLMSpec, job, model_id="final", seed=seed)
    data = _text(job, "data", {"source": "yelp", "split": "dev", "max_rows": 20000})
    record = train_causal_lm(spec, out, list(data.texts))
    _write_metrics(out / "final", {"step": spec.steps, "perplexity": record.eval_perplexity,
                                   "unigram_perplexity": record.unigram_perplexity})


RUNNERS: dict[str, Callable[[TrainJob, int, Path, str], None]] = {
    "modsum": _run_modsum, "finetune": _run_finetune, "image": _run_image, "lm": _run_lm}


def _write_metrics(folder: Path, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))


# -- the stage -----------------------------------------------------------------------------


@ray.remote(num_cpus=1)
def train_task(store, job: TrainJob, seed: int) -> dict:
    """Run one job for one seed unless its ``done.json`` exists; return that record.

    ``store`` is the study's folder (the parent of the run folders)."""
    base = seed_dir(job_key(job), seed)
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
    labels = list_labels(store, job_key(job), seed)
    if not labels:
        raise RuntimeError(f"train job {job.id!r} seed {seed} saved no checkpoint with metrics.json under {store.url(base)}")
    record = {"job": job.id, "kind": job.kind, "seed": seed, "labels": labels, "device": device,
              "seconds": time.perf_counter() - t0}
    store.write_json(f"{base}/done.json", record)
    log.info("train job %s seed %d: %d checkpoints in %.0fs", job.id, seed, len(labels), record["seconds"])
    return {**record, "skipped": False}


def run_train(cfg: StudyConfig, run, num_gpus: float = 0.0) -> dict[str, dict]:
    """Every (job, seed) of the config, in parallel; raises naming the jobs that failed."""
    study = run.parent()
    refs = {}
    for job in cfg.train:
        gpus = job.num_gpus if job.num_gpus is not None else (num_gpus if job.kind != "modsum" else 0.0)
        task = train_task.options(num_gpus=gpus) if gpus else train_task
        for seed in job.seeds:
            refs[f"{job.id}/seed-{seed}"] = task.remote(study, job, seed)
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


def list_labels(store, key: str, seed: int) -> list[str]:
    """Saved checkpoint labels of one job and seed, in training order (step, then final)."""
    base = seed_dir(key, seed)
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
                metrics = study.read_json(f"{seed_dir(keys[job], seed)}/{lab}/metrics.json")
                models.append(spec.model_copy(update={
                    "id": mid, "seed": seed, "seeds": None, "checkpoint": f"{PREFIX}{keys[job]}/seed-{seed}/{lab}",
                    "checkpoint_label": lab}))
                members.append({"model": mid, "seed": seed, "label": lab, "step": metrics.get("step"),
                                "metrics": metrics})
        series[spec.id] = members
    return models, series


def local_checkpoint(store, checkpoint: str, family: str, workdir: Path) -> str:
    """The local checkpoint a family loads for a resolved ``train:<job>/<hash>/seed-<s>/<label>``;
    ``store`` is the run's folder."""
    store = store.parent()
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



"""Sequence-classification fine-tuning with the paper's recipe, resumable, with checkpoints.

The paper (experiment 2) fine-tunes BERT-base on SST-2 and Yelp polarity with max length
256, lr 2e-5, batch 16, 1 epoch, no weight decay, all parameters trained. It states no
schedule, warm-up or clipping; the defaults here are those of the Hugging Face ``Trainer``
(which a recipe of exactly these numbers usually means): AdamW with betas (0.9, 0.999),
eps 1e-8, a linear decay of the learning rate to 0 with no warm-up, gradient-norm clipping
at 1.0, dropout on. ``schedule="constant"`` and ``warmup_ratio`` change that.

Batches are padded to their own longest sequence (dynamic padding), so ``max_length`` only
truncates and costs nothing for short texts. Shuffling is seeded per epoch; on CPU a run is
deterministic for a given seed (and thread count).

Layout under ``out/<id>/``::

    spec.json            the spec and fingerprints of the data; a rerun must match it
    step-<k>/            a Hugging Face folder (model + tokenizer) and metrics.json (the shared
                         Metrics shape: accuracy, f1 and loss on the evaluation texts)
    resume-state.pt      optimizer, scheduler and RNG state of the latest checkpoint
    record.json          written last: every metric, final accuracy/F1, versions

Checkpoints are written to a hidden temporary folder and renamed, so a ``step-<k>`` folder
is always complete; leftovers of a killed run are removed on the next run, which resumes
from the latest checkpoint (bit-identical to an uninterrupted run on CPU). When
``record.json`` exists, the run is returned without training.

At about 530 lines this module is longer than most: the spec and its validation, the
training loop, its checkpoint-and-resume protocol and the record change together.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from layergw.families.base import METRICS_FILE, Metrics, spec_from_params
from layergw.families.hf import BUILTINS, local_folder
from layergw.torchkit import checkpoint as ckpt
from layergw.torchkit.device import resolve_device
from layergw.torchkit.text import encode, pad_rows

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
RESUME_FILE = ckpt.STATE_FILE


class TextDataLike(Protocol):
    """Anything with parallel ``texts`` and integer ``labels`` (e.g. layergw.data.text.TextData)."""

    @property
    def texts(self) -> Sequence[str]: ...

    @property
    def labels(self) -> Any: ...


@dataclass(frozen=True)
class FineTuneSpec:
    """Everything that determines a fine-tuned classifier (defaults: the paper's recipe).

    ``checkpoint`` is a local Hugging Face folder or ``builtin:minilm``. ``save_steps`` are
    optimizer steps at which a checkpoint is saved besides step 0 (pretrained model with a
    fresh head) and the final step. ``eval_every`` adds evaluations (without saving) every
    that many steps.
    """

    id: str
    checkpoint: str
    num_labels: int = 2
    max_length: int = 256
    lr: float = 2e-5
    batch_size: int = 16
    epochs: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    schedule: Literal["linear", "constant"] = "linear"
    max_grad_norm: float | None = 1.0
    seed: int = 0
    save_steps: tuple[int, ...] = ()
    eval_every: int | None = None
    device: str = "auto"
    #: share of attention heads and of MLP neurons removed while fine-tuning (0: dense), by
    #: gradual magnitude pruning over ``sparsity_window`` (fractions of the run's steps)
    sparsity: float = 0.0
    sparsity_window: tuple[float, float] = (0.1, 0.7)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(f"id must be a folder name of letters, digits, '.', '_', '-' "
                             f"(not starting with '.' or '-'), got {self.id!r}")
        if not isinstance(self.checkpoint, str) or not self.checkpoint.strip():
            raise ValueError(f"checkpoint must be a local folder or 'builtin:<name>', got {self.checkpoint!r}")
        if self.checkpoint.startswith("builtin:") and self.checkpoint[8:] not in BUILTINS:
            raise ValueError(f"checkpoint {self.checkpoint!r}: unknown builtin, expected one of "
                             f"{['builtin:' + k for k in BUILTINS]}")
        for name in ("num_labels", "max_length", "batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_labels < 2:
            raise ValueError(f"num_labels must be >= 2 for classification, got {self.num_labels}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule must be 'linear' or 'constant', got {self.schedule!r}")
        if self.max_grad_norm is not None and not (
                isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be None or a number > 0, got {self.max_grad_norm!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        steps = tuple(self.save_steps) if isinstance(self.save_steps, (list, tuple)) else None
        if steps is None or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
            raise ValueError(f"save_steps must be a tuple of integers >= 1, got {self.save_steps!r}")
        if list(steps) != sorted(set(steps)):
            raise ValueError(f"save_steps must be strictly increasing, got {self.save_steps!r}")
        object.__setattr__(self, "save_steps", steps)
        if self.eval_every is not None and (
                isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1):
            raise ValueError(f"eval_every must be None or an integer >= 1, got {self.eval_every!r}")
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) \
                or not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be a number in [0, 1) (e.g. 0.25, 0.7, 0.95), got {self.sparsity!r}")
        window = self.sparsity_window
        if not (isinstance(window, (list, tuple)) and len(window) == 2
                and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in window)
                and 0 <= window[0] < window[1] <= 1):
            raise ValueError(f"sparsity_window must be [start, end] fractions of the steps with "
                             f"0 <= start < end <= 1, got {window!r}")
        object.__setattr__(self, "sparsity_window", (float(window[0]), float(window[1])))
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    def to_json(self) -> dict:
        """JSON-able form (tuples become lists)."""
        d = asdict(self)
        d["save_steps"] = list(self.save_steps)
        d["sparsity_window"] = list(self.sparsity_window)
        return d


@dataclass(frozen=True)
class FineTuneRecord:
    """What a fine-tuning run produced: where, every checkpoint's metrics, the final scores."""

    id: str
    root: str
    spec: dict
    checkpoints: tuple[dict, ...]
    evals: tuple[dict, ...]
    final_accuracy: float
    final_f1: float
    final_loss: float
    total_steps: int
    seconds: float
    device: str
    versions: dict
    data: dict
    train_log: tuple[dict, ...] = field(default=())
    #: the final model's measured share of zeroed heads and neurons (empty for a dense run)
    sparsity: dict = field(default_factory=dict)

    def step_path(self, step: int) -> Path:
        """The Hugging Face folder of the checkpoint at ``step``."""
        steps = [c["step"] for c in self.checkpoints]
        if step not in steps:
            raise ValueError(f"step must be one of the saved steps {steps}, got {step}")
        return Path(self.root) / f"step-{step}"

    @property
    def final_path(self) -> Path:
        return Path(self.root) / f"step-{self.total_steps}"

    def to_json(self) -> dict:
        d = asdict(self)
        for key in ("checkpoints", "evals", "train_log"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_json(cls, d: dict) -> FineTuneRecord:
        d = dict(d)
        for key in ("checkpoints", "evals", "train_log"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


# ---------------------------------------------------------------- helpers


def _check_data(data: TextDataLike, name: str, num_labels: int) -> tuple[list[str], np.ndarray]:
    texts = getattr(data, "texts", None)
    labels = getattr(data, "labels", None)
    if texts is None or labels is None:
        raise ValueError(f"{name} must have .texts and integer .labels (labelled data), got "
                         f"{type(data).__name__} with labels={labels!r}")
    texts = [str(t) for t in texts]
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(texts):
        raise ValueError(f"{name}.labels must be 1-D with one label per text ({len(texts)}), "
                         f"got shape {labels.shape}")
    if len(texts) == 0:
        raise ValueError(f"{name} must hold at least one text, got none")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"{name}.labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ValueError(f"{name}.labels must be in [0, {num_labels}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    return texts, labels.astype(np.int64)


def _fingerprint(texts: list[str], labels: np.ndarray) -> dict:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    h.update(labels.astype(np.int64).tobytes())
    return {"n": len(texts), "sha256": h.hexdigest()[:16],
            "label_counts": np.bincount(labels).tolist()}


def classification_metrics(pred: np.ndarray, labels: np.ndarray, num_labels: int) -> dict:
    """Accuracy, macro F1, and (two labels) binary F1 of label 1 as ``f1`` (else macro)."""
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    f1s = []
    for c in range(num_labels):
        tp = float(np.sum((pred == c) & (labels == c)))
        denom = float(np.sum(pred == c) + np.sum(labels == c))
        f1s.append(2 * tp / denom if denom > 0 else 0.0)
    out = {"accuracy": float(np.mean(pred == labels)), "f1_macro": float(np.mean(f1s))}
    out["f1"] = f1s[1] if num_labels == 2 else out["f1_macro"]
    return out


@torch.no_grad()
def evaluate(model: Any, tokenizer: Any, data: TextDataLike, *, max_length: int = 256,
             batch_size: int = 64, device: str | torch.device | None = None) -> dict:
    """Accuracy, F1 (binary F1 of label 1 for two labels, else macro), macro F1, mean loss.

    Runs in eval mode (dropout off) on the model's device unless ``device`` is given;
    batches go in order of length to pad little. The model's train/eval mode is restored.
    """
    num_labels = int(model.config.num_labels)
    texts, labels = _check_data(data, "data", num_labels)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    enc = encode(tokenizer, texts, max_length)
    order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
    logits = np.zeros((len(texts), num_labels), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out = model(**pad_rows(tokenizer, enc, idx, dev))
        logits[idx] = out.logits.float().cpu().numpy()
    model.train(was_training)
    y = torch.as_tensor(labels)
    loss = float(torch.nn.functional.cross_entropy(torch.as_tensor(logits), y))
    metrics = classification_metrics(logits.argmax(1), labels, num_labels)
    metrics.update(loss=loss, n=len(texts))
    return metrics


def _lr_lambda(spec: FineTuneSpec, total: int):
    """The multiplier of ``lr`` at each step, as transformers' linear / constant schedules with warm-up."""
    warmup = math.ceil(spec.warmup_ratio * total)

    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if spec.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def _write_json_atomic(path: Path, obj: Any) -> None:
    ckpt.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1)))


def _clean_leftovers(root: Path) -> None:
    """Remove the saves in progress an interrupted run left (hidden names, the rule of every
    atomic write)."""
    for p in root.iterdir():
        if not ckpt.in_progress(p.name):
            continue
        log.warning("removing %s, left by an interrupted run", p)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _save_checkpoint(root: Path, step: int, model: Any, tokenizer: Any, metrics: dict) -> Path:
    """Write ``step-<step>/`` via a temporary folder and a rename, so it is complete or absent."""
    def write(tmp: Path) -> None:
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=1, sort_keys=True))

    return ckpt.atomic_write(root / f"step-{step}", write)


def _versions() -> dict:
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- fine-tuning


def finetune(spec: FineTuneSpec, train: TextDataLike, eval: TextDataLike, out: str | Path, *,
             log_every: int = 50, eval_batch_size: int = 64,
             edit: Callable[..., None] | None = None) -> FineTuneRecord:
    """Fine-tune ``spec.checkpoint`` on ``train``, evaluating on ``eval``; return the record.

    Saves ``out/<id>/step-<k>/`` at step 0, at ``spec.save_steps`` and at the final step,
    then ``out/<id>/record.json``. Rerunning with the same spec and data resumes from the
    latest checkpoint, or returns the record at once when the run is finished. ``edit``
    changes the freshly loaded model before training (an ablation drops and freezes blocks;
    only parameters left with ``requires_grad`` train) as ``edit(model, resumed=False)``; a
    resumed run loads its own checkpoint, already edited, and calls ``edit(model,
    resumed=True)`` to re-apply what a checkpoint does not keep (which parameters train).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    train_texts, train_labels = _check_data(train, "train", spec.num_labels)
    eval_texts, eval_labels = _check_data(eval, "eval", spec.num_labels)
    steps_per_epoch = math.ceil(len(train_texts) / spec.batch_size)
    total = steps_per_epoch * spec.epochs
    if spec.save_steps and spec.save_steps[-1] > total:
        raise ValueError(f"save_steps must be <= the number of steps ({total} = {spec.epochs} epoch(s) x "
                         f"{steps_per_epoch} batches of {spec.batch_size}), got {list(spec.save_steps)}")
    save_at = sorted({0, *spec.save_steps, total})
    data_info = {"train": _fingerprint(train_texts, train_labels),
                 "eval": _fingerprint(eval_texts, eval_labels)}

    root = Path(out) / spec.id
    root.mkdir(parents=True, exist_ok=True)
    identity = _identity(spec, data_info)
    spec_path = root / "spec.json"
    if spec_path.exists():
        what = _differs(json.loads(spec_path.read_text()), identity)
        if what:
            raise ValueError(f"out/{spec.id} holds a run with different {what}: use another id or "
                             f"out folder, or delete {root}")
    else:
        _write_json_atomic(spec_path, identity)
    record_path = root / "record.json"
    if record_path.exists():
        log.info("%s is finished (%s exists): returning its record without training", spec.id, record_path)
        return FineTuneRecord.from_json(json.loads(record_path.read_text()))
    _clean_leftovers(root)

    device = torch.device(resolve_device(spec.device))
    ckpt_dir = local_folder(spec.checkpoint)
    eval_data = _Data(eval_texts, eval_labels)

    state = ckpt.TrainState(root, budget=total, what="fine-tuning")
    resume = _load_resume(state, root, save_at)
    if resume is not None:
        start_step = resume["step"]
        log.info("%s: resuming from step %d of %d", spec.id, start_step, total)
        load_from = root / f"step-{start_step}"
    else:
        start_step = 0
        load_from = ckpt_dir
    torch.manual_seed(spec.seed)  # the fresh classifier head
    tokenizer = AutoTokenizer.from_pretrained(load_from, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        load_from, num_labels=spec.num_labels, local_files_only=True)
    if tokenizer.pad_token is None:  # a decoder's tokenizer: pad with its end token, right-padded and masked
        if tokenizer.eos_token is None:
            raise ValueError(f"checkpoint {spec.checkpoint!r}: its tokenizer has neither a pad nor an end token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # a decoder classifies at its last real token, found by the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    if edit is not None:
        edit(model, resumed=resume is not None)
    model.to(device)
    model.train()
    pruner = _pruner(spec, model, total)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.lr, betas=(0.9, 0.999),
                                  eps=1e-8, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(spec, total))
    checkpoints: list[dict] = []
    evals: list[dict] = []
    train_log: list[dict] = []
    seconds = 0.0
    if resume is not None:
        record = state.resume({"optimizer": optimizer, "scheduler": scheduler}, device=device, state=resume).record
        checkpoints, evals, train_log = record["checkpoints"], record["evals"], record["train_log"]
        seconds = record["seconds"]
    else:
        torch.manual_seed(spec.seed)  # dropout

    enc = encode(tokenizer, train_texts, spec.max_length)
    y_all = torch.as_tensor(train_labels)
    log.info("%s: %d train / %d eval texts, %d steps (%d per epoch), checkpoints at %s, device %s",
             spec.id, len(train_texts), len(eval_texts), total, steps_per_epoch, save_at, device)

    def checkpoint(step: int, t_elapsed: float, train_loss: float | None) -> None:
        folder = root / f"step-{step}"
        if folder.is_dir() and (folder / METRICS_FILE).is_file():
            log.info("%s: step-%d exists, not rewritten", spec.id, step)
            metrics = json.loads((folder / METRICS_FILE).read_text())
        else:
            metrics = _eval_metrics(step, t_elapsed, train_loss)
            _save_checkpoint(root, step, model, tokenizer, metrics)
            log.info("%s: saved step-%d: eval accuracy %.4f, f1 %.4f, loss %.4f", spec.id, step,
                     metrics["accuracy"], metrics["f1"], metrics["loss"])
        checkpoints.append(metrics)
        if step < total:
            state.save(step, {"optimizer": optimizer, "scheduler": scheduler},
                       {"checkpoints": checkpoints, "evals": evals, "train_log": train_log, "seconds": t_elapsed},
                       device=device)

    def _eval_metrics(step: int, t_elapsed: float, train_loss: float | None) -> dict:
        m = evaluate(model, tokenizer, eval_data, max_length=spec.max_length,
                     batch_size=eval_batch_size, device=device)
        return Metrics(step=step, accuracy=m["accuracy"], f1=m["f1"], loss=m["loss"], split="eval", extra={
            "epoch": step / steps_per_epoch, "f1_macro": m["f1_macro"], "train_loss": train_loss,
            "examples_seen": _examples_seen(step, steps_per_epoch, spec.batch_size, len(train_texts)),
            "lr": scheduler.get_last_lr()[0], "seconds": round(t_elapsed, 3),
            **({"sparsity": _measured(model)} if pruner is not None else {})}).to_json()

    t0 = time.perf_counter() - seconds
    if start_step == 0:
        checkpoint(0, 0.0, None)
        t0 = time.perf_counter()
    step = start_step
    window_loss, window_n, window_t = 0.0, 0, 0.0  # window_t: seconds in training steps only
    since_ckpt_loss, since_ckpt_n = 0.0, 0
    for epoch in range(start_step // steps_per_epoch, spec.epochs):
        perm = np.random.default_rng([spec.seed, epoch]).permutation(len(train_texts))
        first = step - epoch * steps_per_epoch
        for b in range(first, steps_per_epoch):
            t_step = time.perf_counter()
            idx = perm[b * spec.batch_size:(b + 1) * spec.batch_size]
            batch = pad_rows(tokenizer, enc, idx, device)
            out_ = model(**batch, labels=y_all[idx].to(device))
            loss = out_.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            if pruner is not None:
                pruner.step(step)
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise ValueError(f"training loss must stay finite, got {lv} at step {step} of {spec.id} "
                                 f"(lr {scheduler.get_last_lr()[0]:.2e}): lower lr or check the data")
            window_t += time.perf_counter() - t_step
            window_loss += lv * len(idx)
            window_n += len(idx)
            since_ckpt_loss += lv * len(idx)
            since_ckpt_n += len(idx)
            if step % log_every == 0 or step == total:
                entry = {"step": step, "loss": window_loss / window_n,
                         "lr": scheduler.get_last_lr()[0],
                         "examples_per_s": window_n / max(window_t, 1e-9)}
                train_log.append(entry)
                log.info("%s: step %d/%d loss %.4f lr %.2e %.1f examples/s", spec.id, step, total,
                         entry["loss"], entry["lr"], entry["examples_per_s"])
                window_loss, window_n, window_t = 0.0, 0, 0.0
            train_loss = since_ckpt_loss / since_ckpt_n
            if step in save_at:
                checkpoint(step, time.perf_counter() - t0, train_loss)
                since_ckpt_loss, since_ckpt_n = 0.0, 0
            elif spec.eval_every is not None and step % spec.eval_every == 0:
                m = _eval_metrics(step, time.perf_counter() - t0, train_loss)
                evals.append(m)
                log.info("%s: step %d eval accuracy %.4f f1 %.4f loss %.4f", spec.id, step,
                         m["accuracy"], m["f1"], m["loss"])
    seconds = time.perf_counter() - t0
    final = checkpoints[-1]
    record = FineTuneRecord(
        id=spec.id, root=str(root), spec=spec.to_json(), checkpoints=tuple(checkpoints),
        evals=tuple(evals), final_accuracy=final["accuracy"], final_f1=final["f1"],
        final_loss=final["loss"], total_steps=total, seconds=round(seconds, 3),
        device=_device_name(device), versions=_versions(), data=data_info, train_log=tuple(train_log),
        sparsity={"target": spec.sparsity, **_measured(model)} if pruner is not None else {})
    _write_json_atomic(record_path, record.to_json())
    state.clear()
    log.info("%s: done in %.1f s: eval accuracy %.4f, f1 %.4f", spec.id, seconds,
             record.final_accuracy, record.final_f1)
    return record


def _pruner(spec: FineTuneSpec, model: Any, total: int) -> Any:
    """The structured pruner of a sparse run (None for a dense one), through the architecture table."""
    if not spec.sparsity:
        return None
    from layergw.families.hf.architectures import architecture_for
    from layergw.families.hf.sparsity import StructuredPruner

    arch = architecture_for(model.config)
    if arch is None:
        raise ValueError(f"sparsity {spec.sparsity} needs the architecture table's entry for model_type "
                         f"{getattr(model.config, 'model_type', None)!r}, which it lacks (docs/models.md)")
    return StructuredPruner(model, arch, spec.sparsity, total, spec.sparsity_window)


def _measured(model: Any) -> dict:
    from layergw.families.hf.architectures import architecture_for
    from layergw.families.hf.sparsity import measure

    return measure(model, architecture_for(model.config))


def _examples_seen(step: int, steps_per_epoch: int, batch_size: int, n: int) -> int:
    epochs, rest = divmod(step, steps_per_epoch)
    return epochs * n + min(rest * batch_size, n)


@dataclass(frozen=True)
class _Data:
    texts: list[str]
    labels: np.ndarray


#: spec fields a run may resume under with other values: where it runs, and where the same
#: checkpoint was found (a retried task on another node downloads it to another folder);
#: the checkpoint's contents are compared instead
_PLACE = ("device", "checkpoint")


_DEFAULT_SPEC = FineTuneSpec(id="x", checkpoint="x").to_json()


def _identity(spec: FineTuneSpec, data_info: dict) -> dict:
    """What a run folder's ``spec.json`` records, and a resumed run must match."""
    from layergw.families import content_hash

    folder = Path(spec.checkpoint).expanduser()
    checkpoint = content_hash(folder) if not spec.checkpoint.startswith("builtin:") and folder.is_dir() \
        else spec.checkpoint
    return {"spec": spec.to_json(), "checkpoint_contents": checkpoint, "data": data_info}


def _differs(stored: dict, identity: dict) -> str:
    """What differs between a stored identity and this run's, in words ('' when nothing does);
    a folder written before ``checkpoint_contents`` existed is compared by checkpoint path."""
    old, new = stored.get("spec", {}), identity["spec"]
    place = _PLACE if "checkpoint_contents" in stored else ("device",)
    default = {k: v for k, v in _DEFAULT_SPEC.items() if k not in old}  # fields added since it was written
    fields = sorted(k for k in set(old) | set(new) if k not in place and {**default, **old}.get(k) != new.get(k))
    if "checkpoint_contents" in stored and stored["checkpoint_contents"] != identity["checkpoint_contents"]:
        fields.append("checkpoint (its contents)")
    if fields:
        return f"spec fields {fields}"
    return "" if stored.get("data") == identity["data"] else "train or eval data"


def _load_resume(state: ckpt.TrainState, root: Path, save_at: list[int]) -> dict | None:
    """The saved training state when its checkpoint folder is complete, else None."""
    saved = state.peek()
    if saved is None:
        return None
    step = saved.get("step")
    if step not in save_at or not (root / f"step-{step}" / METRICS_FILE).is_file():
        log.warning("ignoring %s: its checkpoint step-%s is missing", state.path, step)
        return None
    return saved


def recipe(job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
    """A study's finetune job: ``out/step-<k>/`` Hugging Face folders, each with ``metrics.json``.

    ``params``: :class:`FineTuneSpec` fields (``checkpoint`` required) plus ``train`` and
    ``eval``, :func:`layergw.data.text.load_text` arguments (default SST-2 train and dev).
    """
    from layergw.data.text import text_from_params

    where = f"train job {job_id!r} (hf finetune)"
    spec = spec_from_params(FineTuneSpec, params, where, fixed={"id": out.name, "seed": seed, "device": device},
                            skip=("train", "eval"))
    train = text_from_params(params.get("train", {"source": "sst2", "split": "train"}), f"{where}: params.train")
    evaluation = text_from_params(params.get("eval", {"source": "sst2", "split": "dev"}), f"{where}: params.eval")
    finetune(spec, train, evaluation, out.parent)

"""Pruning and freezing of any Hugging Face model through its architecture entry, fine-tuned and
measured by task:

- ``classify`` (encoders' default): a sequence classifier on texts, the family's fine-tuning
  recipe (the paper's: lr 2e-5, batch 16, one epoch, max length 256; ``finetune.py``), accuracy
  and F1 on the evaluation texts; a vision transformer is an image classifier on its image set
  (accuracy on the test split);
- ``lm`` (causal LMs' default): next-token prediction on the training texts, scored on held-out
  texts by loss, perplexity and top-1 next-token accuracy (``accuracy``, so knees read alike).

``params``: the task's spec fields (:class:`~layergw.families.hf.finetune.FineTuneSpec` for text
classification, :class:`~layergw.families.hf.tune.TuneSpec` otherwise), ``task``, and ``train`` /
``eval`` data mappings (texts: :func:`layergw.data.text.load_text`, default SST-2 train and dev;
images: :func:`layergw.data.images.load_images`, default the model's own image source). A cell
keeps ``ablation.keep`` of the blocks, puts a fresh classifier (seeded by the cell) on top (an
LM keeps its head; a pooler keeps its pretrained weights) and freezes the embeddings and the
blocks before ``first_trained``. A tied LM head is the embedding matrix, so it stays frozen
with the embeddings.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layergw.families.base import Ablation, Metrics, spec_from_params
from layergw.families.hf.adapter import HFModel
from layergw.families.hf.architectures import is_causal
from layergw.families.hf.capture import block_list
from layergw.families.hf.edit import freeze_before, keep_blocks
from layergw.torchkit.checkpoint import resume_points

TASKS = ("classify", "lm")
_DATA_KEYS = ("train", "eval", "task")


def task_of(model: HFModel, params: dict) -> str:
    task = params.get("task") or ("lm" if is_causal(model.model.config) else "classify")
    if task not in TASKS:
        raise ValueError(f"hf ablation: task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "lm" and (model.vision or not is_causal(model.model.config)):
        raise ValueError(f"hf ablation: task 'lm' needs a causal language model; {model.checkpoint} is not one")
    return task


def apply(model: nn.Module, hf: HFModel, ablation: Ablation, *, resumed: bool = False) -> None:
    """Keep ``ablation.keep`` of the blocks and freeze the embeddings and the blocks before
    ``first_trained``; the classifier is the fresh one the task model was loaded with (seeded by
    the cell), the rest keeps the checkpoint's weights. ``resumed``: ``model`` is a saved
    checkpoint of this cell (blocks already kept, head already trained), so only the freezing is
    applied again."""
    arch = hf.architecture("pruning and freezing")
    if len(ablation.keep) < arch.min_blocks:
        raise ValueError(f"hf ablation: {arch.describe()} runs with {arch.min_blocks} block(s) at least (its "
                         f"forward needs them); a prune cannot keep {len(ablation.keep)}")
    _, blocks = block_list(model, arch)
    if resumed:
        if len(blocks) != len(ablation.keep):
            raise ValueError(f"hf ablation: the saved state of this cell has {len(blocks)} blocks, but the cell keeps "
                             f"{len(ablation.keep)}; delete its working folder to start again")
    else:
        keep_blocks(model, arch, ablation.keep)
    if ablation.first_trained:
        freeze_before(model, arch, ablation.first_trained)


def _workdir(workdir: Path | None) -> Any:
    if workdir is not None:
        from contextlib import nullcontext

        return nullcontext(str(workdir))
    return tempfile.TemporaryDirectory(prefix="layergw-hf-ablation-")


def ablate(model: HFModel, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
    """Fine-tune one ablation cell of the checkpoint and measure it (module docstring). With
    ``workdir`` the fine-tuning runs there and a rerun resumes from its latest saved state."""
    t0 = time.perf_counter()
    task = task_of(model, params)
    if task == "classify" and not model.vision:
        return _classify_text(model, ablation, params, device, workdir, t0)
    from layergw.families.hf.tune import TuneSpec, tune_images, tune_lm

    spec = spec_from_params(TuneSpec, params, f"hf ablation ({task})", skip=_DATA_KEYS, fixed={"seed": ablation.seed})
    with _workdir(workdir) as folder:
        if task == "lm":
            lm = _load(model, "AutoModelForCausalLM")
            apply(lm, model, ablation)
            train, evaluation = _texts(params)
            out = tune_lm(lm, model.tokenizer, train.texts, evaluation.texts, spec, device, Path(folder))
            return Metrics(step=out["steps"], accuracy=out["accuracy"], loss=out["loss"], perplexity=out["perplexity"],
                           split="eval", extra={"seconds": time.perf_counter() - t0, "n_train": out["n_train"],
                                                "tokens": out["tokens"], "task": task})
        train, test = _images(model, params)
        torch.manual_seed(ablation.seed)  # the fresh classifier
        net = _load(model, "AutoModelForImageClassification", num_labels=train.num_classes)
        apply(net, model, ablation)
        out = tune_images(net, train, test, spec, device, Path(folder))
    return Metrics(step=out["steps"], accuracy=out["accuracy"], split="test",
                   extra={"seconds": time.perf_counter() - t0, "n_train": out["n_train"], "task": task})


def reference(model: HFModel, params: dict, device: str) -> Metrics | None:
    """A causal LM as it is, scored on the evaluation texts as the ``lm`` cells are; None for a
    classifier (a pretrained model has no head for the task)."""
    if task_of(model, params) != "lm":
        return None
    from layergw.families.hf.tune import TuneSpec, _tokens, lm_scores

    spec = spec_from_params(TuneSpec, params, "hf ablation (lm)", skip=_DATA_KEYS)
    lm = _load(model, "AutoModelForCausalLM").to(device)
    _, evaluation = _texts(params)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    out = lm_scores(lm, _tokens(model.tokenizer, evaluation.texts, spec.max_length), pad, device)
    return Metrics(step=0, accuracy=out["accuracy"], loss=out["loss"], perplexity=out["perplexity"], split="eval",
                   extra={"tokens": out["tokens"], "task": "lm"})


def _load(model: HFModel, auto: str, **kwargs: Any) -> nn.Module:
    import transformers

    return getattr(transformers, auto).from_pretrained(model.path, dtype=torch.float32, local_files_only=True,
                                                       **kwargs)


def _texts(params: dict) -> tuple[Any, Any]:
    from layergw.data.text import text_from_params

    return (text_from_params(params.get("train", {"source": "sst2", "split": "train"}), "hf ablation: params.train"),
            text_from_params(params.get("eval", {"source": "sst2", "split": "dev"}), "hf ablation: params.eval"))


def _images(model: HFModel, params: dict) -> tuple[Any, Any]:
    """The training and test images, prepared as extraction prepares the probe images."""
    from layergw.data.images import images_from_params
    from layergw.families.hf.adapter import renormalised

    size = int(model.data.images.shape[-1])
    source = {k: v for k, v in model.data_args.items() if k != "split"}
    train = images_from_params(params.get("train", {**source, "split": "train"}), size, "hf ablation: params.train")
    test = images_from_params(params.get("eval", {**source, "split": "test"}), size, "hf ablation: params.eval")
    return renormalised(train, Path(model.path)), renormalised(test, Path(model.path))


def _classify_text(model: HFModel, ablation: Ablation, params: dict, device: str, workdir: Path | None,
                   t0: float) -> Metrics:
    from layergw.families.hf.finetune import FineTuneSpec, finetune

    train, evaluation = _texts(params)
    fixed = {"id": "cell", "checkpoint": model.path, "seed": ablation.seed, "device": device}
    spec = spec_from_params(FineTuneSpec, params, "hf ablation", skip=_DATA_KEYS, fixed=fixed)
    if workdir is not None and "save_steps" not in params:
        total = math.ceil(len(train.texts) / spec.batch_size) * spec.epochs
        steps = sorted(resume_points(total))
        spec = spec_from_params(FineTuneSpec, {**params, "save_steps": steps}, "hf ablation", skip=_DATA_KEYS,
                                fixed=fixed)

    def edit(m: Any, resumed: bool = False) -> None:
        apply(m, model, ablation, resumed=resumed)

    with _workdir(workdir) as folder:
        record = finetune(spec, train, evaluation, Path(folder), edit=edit)
    last = record.checkpoints[-1]
    return Metrics(step=record.total_steps, accuracy=record.final_accuracy, f1=record.final_f1, loss=record.final_loss,
                   split="eval", extra={"seconds": time.perf_counter() - t0, "n_train": len(train.texts),
                                        "train_loss": last["extra"].get("train_loss"), "task": "classify"})


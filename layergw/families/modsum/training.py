"""Training of the modular-sum models: end to end, or layer-wise with frozen earlier blocks.

Full-batch AdamW as in the paper (lr 1e-3, weight decay 2). The paper runs 26,000
epochs; ``max_epochs`` caps a phase and ``extra_epochs`` ends it that many epochs after
the accuracy goal is first met, so a CPU run stops once the model is done.

The paper is silent on the loss precision and the learning-rate schedule; its reference
(Zhong et al.'s code) computes the loss in float64 and warms the rate up linearly over
10 steps, the first at rate 0. ``loss_dtype`` and ``warmup_epochs`` choose these; the
``*_ref`` presets use the reference's model layout and both.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from layergw.data.modsum import ModSumData, make_modsum
from layergw.families.base import spec_from_params, write_metrics
from layergw.families.modsum.checkpoint import metrics_of, save_checkpoint
from layergw.families.modsum.model import ModSumConfig, ModSumTransformer, make_head
from layergw.torchkit import checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModSumTrainSpec:
    """Everything that determines a trained modular-sum model."""

    model_id: str
    task: str = "f_mod"
    n_blocks: int = 1
    scheme: Literal["end_to_end", "layerwise"] = "end_to_end"
    lr: float = 1e-3
    weight_decay: float = 2.0
    betas: tuple[float, float] = (0.9, 0.98)
    max_epochs: int = 26_000
    extra_epochs: int = 2_000
    target_val_acc: float = 0.99
    eval_every: int = 50
    seed: int = 0
    split_seed: int = 0
    train_fraction: float = 0.8
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    layout: str = "eq_causal"
    loss_dtype: Literal["float32", "float64"] = "float32"
    warmup_epochs: int = 0
    #: ``softmax`` cross-entropy (the paper's) or ``stablemax`` (Prieto et al. 2025: s(x) = x + 1 for
    #: x >= 0 and 1 / (1 - x) below, in place of exp, against softmax collapse); departures
    loss: Literal["softmax", "stablemax"] = "softmax"
    #: ``adamw`` (the paper's) or ``ortho_adamw`` (Prieto et al.'s ⊥AdamW: each gradient without its
    #: component along its weights, rescaled to its own norm, then AdamW)
    optimizer: Literal["adamw", "ortho_adamw"] = "adamw"
    #: per phase, replacing ``weight_decay`` / ``extra_epochs`` (departures from the paper, which
    #: uses one setting for every phase); None: the single setting everywhere
    phase_weight_decay: tuple[float, ...] | None = None
    phase_extra_epochs: tuple[int, ...] | None = None
    #: what a non-final layer-wise phase hands the next block: "head" (the paper's: linear
    #: classifiers of its targets) or "linear" (also a linear regression of the targets'
    #: one-hot codes, weighted by handover_weight, so every residue is linearly there)
    handover: Literal["head", "linear"] = "head"
    handover_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.loss_dtype not in ("float32", "float64"):
            raise ValueError(f"loss_dtype must be 'float32' or 'float64', got {self.loss_dtype!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.loss not in ("softmax", "stablemax"):
            raise ValueError(f"loss must be 'softmax' or 'stablemax', got {self.loss!r}")
        if self.optimizer not in ("adamw", "ortho_adamw"):
            raise ValueError(f"optimizer must be 'adamw' or 'ortho_adamw', got {self.optimizer!r}")
        if self.handover not in ("head", "linear") or self.handover_weight <= 0:
            raise ValueError(f"handover must be 'head' or 'linear' with handover_weight > 0, got {self.handover!r} "
                             f"and {self.handover_weight}")
        phases = self.n_blocks if self.scheme == "layerwise" else 1
        for name in ("phase_weight_decay", "phase_extra_epochs"):
            value = getattr(self, name)
            if value is None:
                continue
            object.__setattr__(self, name, tuple(value))
            if len(value) != phases or any(v < 0 for v in value):
                raise ValueError(f"{name} must give one value >= 0 per phase ({phases} for this scheme), got {value!r}")
        if self.scheme not in ("end_to_end", "layerwise"):
            raise ValueError(f"scheme must be 'end_to_end' or 'layerwise', got {self.scheme!r}")
        if self.n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {self.n_blocks}")
        if self.max_epochs < 1 or self.eval_every < 1 or self.extra_epochs < 0:
            raise ValueError("max_epochs and eval_every must be >= 1 and extra_epochs >= 0")

    def phase_setting(self, name: str, phase: int) -> float:
        """``weight_decay`` or ``extra_epochs`` of one phase (its per-phase value when given)."""
        per_phase = getattr(self, f"phase_{name}")
        return getattr(self, name) if per_phase is None else per_phase[phase]


@dataclass
class PhaseRecord:
    phase: int
    block: int | None
    targets: list[str]
    epochs: int
    reached_goal_at: int | None
    train_acc: float
    val_acc: float
    train_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)


def phase_plan(spec: ModSumTrainSpec, data: ModSumData) -> list[tuple[list[int], list[int], list[str]]]:
    """For each phase: trainable blocks, output sizes and target names.

    End to end is one phase predicting the final ``c``. Layer-wise phase k trains block k
    to predict (c_k, b), the last block predicts ``c``; with fewer steps than blocks the
    last step is repeated.
    """
    names = data.target_names()
    if spec.scheme == "end_to_end":
        return [(list(range(spec.n_blocks)), [data.moduli[-1]], [names[-1]])]
    plan = []
    for k in range(spec.n_blocks):
        step = min(k, len(data.moduli) - 1)
        if k == spec.n_blocks - 1:
            plan.append(([k], [data.moduli[-1]], [names[-1]]))
        else:
            plan.append(([k], [data.moduli[step], data.p], [names[step], "b"]))
    return plan


def model_config(spec: ModSumTrainSpec, data: ModSumData, plan: list) -> ModSumConfig:
    return ModSumConfig(p=data.p, n_blocks=spec.n_blocks, d_model=spec.d_model, n_heads=spec.n_heads,
                        d_head=spec.d_head, d_mlp=spec.d_mlp, head_sizes=tuple(plan[-1][1]), layout=spec.layout,
                        n_ctx=ModSumConfig.context_length(spec.layout))


def _lr_factor(spec: ModSumTrainSpec, epoch: int) -> float:
    """Linear warm-up over ``warmup_epochs`` steps from rate 0 at epoch 1, as the reference."""
    return min((epoch - 1) / spec.warmup_epochs, 1.0) if spec.warmup_epochs else 1.0


def _labels(data: ModSumData, names: list[str]) -> torch.Tensor:
    cols = []
    tnames = data.target_names()
    for name in names:
        cols.append(data.inputs[:, 1] if name == "b" else data.targets[:, tnames.index(name)])
    return torch.as_tensor(np.stack(cols, axis=1))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, kind: str = "softmax") -> torch.Tensor:
    """Mean cross-entropy of ``logits`` against labels ``y``, under softmax or StableMax."""
    if kind == "softmax":
        return nn.functional.cross_entropy(logits, y)
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - torch.clamp_max(logits, 0)))
    log_p = torch.log(s) - torch.log(s.sum(-1, keepdim=True))
    return -log_p.gather(-1, y[:, None]).mean()


@torch.no_grad()
def orthogonal_gradients(params: list[torch.Tensor], eps: float = 1e-30) -> None:
    """⊥Grad: each parameter's gradient without its component along the parameter, rescaled to the
    gradient's own norm (so the step only turns the weights, never scales them up)."""
    for p in params:
        if p.grad is None:
            continue
        w, g = p.reshape(-1), p.grad.reshape(-1)
        ortho = g - (w @ g) / (w @ w + eps) * w
        p.grad.copy_((ortho * (g.norm() / (ortho.norm() + eps))).view_as(p.grad))


def _accuracy(logits: list[torch.Tensor], y: torch.Tensor) -> float:
    ok = torch.ones(y.shape[0], dtype=torch.bool)
    for i, lg in enumerate(logits):
        ok &= lg.argmax(-1) == y[:, i]
    return ok.float().mean().item()


def train_modsum(
    spec: ModSumTrainSpec,
    *,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
    on_phase_end: Callable[[int, ModSumTransformer], None] | None = None,
    on_eval: Callable[[int, PhaseRecord, ModSumTransformer], None] | None = None,
    workdir: str | Path | None = None,
    save_every: int = 500,
    phases: int | None = None,
) -> tuple[ModSumTransformer, dict]:
    """Train a modular-sum model; return it and a JSON-able training record.

    With ``workdir``, the full training state (weights, auxiliary heads, optimizer,
    phase, epoch, history) is saved there every ``save_every`` epochs and at each phase
    end, and training resumes from it when it exists, so a 26,000-epoch run can be
    spread over several sessions or machines. ``on_phase_end(phase, model)`` is called
    after each phase and ``on_eval(phase, record, model)`` after each evaluation (to keep
    snapshots, say). ``phases`` trains only the first that many phases (the record is then
    marked incomplete): phase 1 of a layer-wise model alone, for instance.
    """
    torch.manual_seed(spec.seed)
    data = make_modsum(spec.task, train_fraction=spec.train_fraction, split_seed=spec.split_seed)
    if spec.scheme == "layerwise" and spec.n_blocks < 2:
        raise ValueError("layer-wise training needs n_blocks >= 2")
    plan = phase_plan(spec, data)
    if phases is not None and not 1 <= phases <= len(plan):
        raise ValueError(f"phases must be between 1 and {len(plan)} for {spec.model_id!r}, got {phases}")
    cfg = model_config(spec, data, plan)
    model = ModSumTransformer(cfg).to(device)
    x = torch.as_tensor(data.inputs, device=device)
    tr = torch.as_tensor(data.train_idx, device=device)
    va = torch.as_tensor(data.val_idx, device=device)
    records: list[PhaseRecord] = []
    keeper = train_state(workdir, spec)
    state = load_state(keeper, spec)
    if state:
        model.load_state_dict(state["parts"]["model"])
        if state.get("rng_cpu") is not None:  # a new phase's heads draw from it, as they would have
            torch.set_rng_state(state["rng_cpu"])
        records = [PhaseRecord(**r) for r in state["records"]]
        if _continues_past_cap(records, state, spec):
            records.pop()
            log.info("%s: phase %d stopped at its cap of %d epochs short of the goal; continuing to %d",
                     spec.model_id, state["phase"] + 1, state["epoch"], spec.max_epochs)
        log.info("%s: resuming from %s at phase %d epoch %d", spec.model_id, keeper.path, state["phase"] + 1,
                 state["epoch"])
    started = time.perf_counter() - (state["seconds"] if state else 0.0)
    for phase, (blocks, sizes, names) in enumerate(plan[:phases]):
        if phase < len(records):
            continue
        y = _labels(data, names).to(device)
        final = phase == len(plan) - 1
        heads = model.heads if final else nn.ModuleList(make_head(cfg, s) for s in sizes).to(device)
        linear_handover = not final and spec.handover == "linear"
        if linear_handover:  # the last head regresses the targets' one-hot codes
            heads.append(nn.Linear(cfg.d_model, sum(sizes)).to(device))
            codes = torch.cat([nn.functional.one_hot(y[:, i], s) for i, s in enumerate(sizes)], 1).to(torch.float32)
        first, last = blocks[0], blocks[-1] + 1
        params = [p for b in blocks for p in model.blocks[b].parameters()] + list(heads.parameters())
        if first == 0:
            params += [model.W_E, model.W_pos]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        if first > 0:  # frozen blocks: their output once per phase
            with torch.no_grad():
                frozen_resid = model.run_blocks(model.embed(x), 0, first)

        def forward(rows: torch.Tensor | None = None) -> list[torch.Tensor]:
            """The heads' logits on ``rows`` of the inputs (all when None); the last trained block
            runs at the last position only, which is all the heads read."""
            if first > 0:
                resid = frozen_resid if rows is None else frozen_resid[rows]
            else:
                resid = model.embed(x if rows is None else x[rows])
            out = model.run_blocks(resid, first, last, last_only=True)[:, -1]
            return [h(out) for h in heads]

        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.phase_setting("weight_decay", phase),
                                betas=spec.betas)
        y_tr = y[tr]
        extra_epochs = spec.phase_setting("extra_epochs", phase)
        rec = PhaseRecord(phase, first if spec.scheme == "layerwise" else None, names, 0, None, 0.0, 0.0, float("nan"), 0.0)
        start_epoch = 1
        parts = {"model": model, "heads": heads, "optimizer": opt}
        if state and state["phase"] == phase:
            keeper.resume(parts, device=device, state=state)
            rec = PhaseRecord(**state["current"])
            start_epoch = state["epoch"] + 1
        t0 = time.perf_counter() - rec.seconds
        t_resumed = time.perf_counter()

        def save(epoch: int, rec: PhaseRecord = rec, parts: dict = parts) -> None:
            rec.seconds = time.perf_counter() - t0
            keeper.save(epoch, parts, {"spec": asdict(spec), "phase": phase, "epoch": epoch,
                                       "records": [asdict(r) for r in records], "current": asdict(rec),
                                       "seconds": time.perf_counter() - started}, device=device)

        loss_dtype = getattr(torch, spec.loss_dtype)
        for epoch in range(start_epoch, spec.max_epochs + 1):
            for group in opt.param_groups:
                group["lr"] = spec.lr * _lr_factor(spec, epoch)
            logits = forward(tr)
            loss = sum(cross_entropy(lg.to(loss_dtype), y_tr[:, i], spec.loss)
                       for i, lg in enumerate(logits[:len(sizes)]))
            if linear_handover:
                loss = loss + spec.handover_weight * nn.functional.mse_loss(logits[-1].to(loss_dtype),
                                                                           codes[tr].to(loss_dtype))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.optimizer == "ortho_adamw":
                orthogonal_gradients(params)
            opt.step()
            if epoch % spec.eval_every == 0 or epoch == spec.max_epochs:
                with torch.no_grad():
                    logits = forward()
                    rec.train_acc = _accuracy([lg[tr] for lg in logits[:len(sizes)]], y[tr])
                    rec.val_acc = _accuracy([lg[va] for lg in logits[:len(sizes)]], y[va])
                    heads_val = [_accuracy([lg[va]], y[va, i:i + 1]) for i, lg in enumerate(logits[:len(sizes)])]
                    heads_train = [_accuracy([lg[tr]], y[tr, i:i + 1]) for i, lg in enumerate(logits[:len(sizes)])]
                rec.train_loss = float(loss.item())
                rec.epochs = epoch
                row = {"epoch": epoch, "loss": rec.train_loss, "train_acc": rec.train_acc, "val_acc": rec.val_acc}
                if len(sizes) > 1:  # which target a layer-wise phase misses: one accuracy per head
                    row.update(train_acc_heads=heads_train, val_acc_heads=heads_val)
                rec.history.append(row)
                per_epoch = (time.perf_counter() - t_resumed) / (epoch - start_epoch + 1)
                heads_msg = ("" if len(sizes) == 1 else
                             " (" + ", ".join(f"{n} {a:.3f}" for n, a in zip(names, heads_val)) + ")")
                msg = (f"{spec.model_id} phase {phase + 1}/{len(plan)} epoch {epoch}/{spec.max_epochs} "
                       f"loss {rec.train_loss:.4g} train {rec.train_acc:.4f} val {rec.val_acc:.4f}{heads_msg} "
                       f"(at most {_duration((spec.max_epochs - epoch) * per_epoch)} left in this phase)")
                log.info(msg)
                if progress:
                    progress(msg)
                if rec.reached_goal_at is None and rec.train_acc == 1.0 and rec.val_acc >= spec.target_val_acc:
                    rec.reached_goal_at = epoch
                if on_eval:
                    on_eval(phase, rec, model)
                if rec.reached_goal_at is not None and epoch - rec.reached_goal_at >= extra_epochs:
                    break
                if save_every and epoch % save_every == 0:
                    save(epoch)
        rec.seconds = time.perf_counter() - t0
        records.append(rec)
        save(rec.epochs)
        if on_phase_end:
            on_phase_end(phase, model)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model.cpu(), _record(spec, cfg, [asdict(r) for r in records], time.perf_counter() - started, device,
                                complete=len(records) == len(plan))


def snapshot_saver(spec: ModSumTrainSpec, folder: Path, every: int) -> Callable[[int, PhaseRecord, ModSumTransformer], None]:
    """An ``on_eval`` hook keeping a checkpoint ``p<phase>-e<epoch>`` every ``every`` epochs
    and at the epoch a phase first reaches its goal (for what a block hands over in time)."""
    def save(phase: int, rec: PhaseRecord, model: ModSumTransformer) -> None:
        if rec.epochs % every and rec.reached_goal_at != rec.epochs:
            return
        name = f"p{phase + 1}-e{rec.epochs:05d}"
        record = {"model_id": name, "spec": asdict(spec), "model_config": model.cfg.to_dict(), "phases": [],
                  "complete": False, "snapshot": {"phase": phase + 1, "epoch": rec.epochs, "train_acc": rec.train_acc,
                                                  "val_acc": rec.val_acc, "goal": rec.reached_goal_at == rec.epochs}}
        save_checkpoint(model, record, folder)
    return save


def _continues_past_cap(records: list[PhaseRecord], state: dict, spec: ModSumTrainSpec) -> bool:
    """Whether a raised ``max_epochs`` reopens the state's last finished phase: it stopped at
    a lower cap without reaching the goal. Only the last phase can go on; an earlier one would
    change what the later phases were trained on."""
    if not records or state["phase"] != len(records) - 1:
        return False
    last = records[-1]
    return last.reached_goal_at is None and last.epochs == state["epoch"] < spec.max_epochs


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def _record(spec: ModSumTrainSpec, cfg: ModSumConfig, phases: list[dict], seconds: float, device: str,
            complete: bool) -> dict:
    return {
        "model_id": spec.model_id,
        "spec": asdict(spec),
        "model_config": cfg.to_dict(),
        "phases": phases,
        "complete": complete,
        "final_train_acc": phases[-1]["train_acc"],
        "final_val_acc": phases[-1]["val_acc"],
        "seconds": seconds,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }


def export_state(spec: ModSumTrainSpec, workdir: str | Path) -> tuple[ModSumTransformer, dict]:
    """The model as it stands in a saved training state, with a record marked incomplete
    when phases remain (``complete: false``, accuracies of the phase in progress)."""
    state = load_state(train_state(workdir, spec), spec)
    if state is None:
        raise ValueError(f"no training state in {workdir}")
    data = make_modsum(spec.task, train_fraction=spec.train_fraction, split_seed=spec.split_seed)
    plan = phase_plan(spec, data)
    cfg = model_config(spec, data, plan)
    model = ModSumTransformer(cfg)
    model.load_state_dict(state["parts"]["model"])
    model.eval()
    phases = list(state["records"])
    if len(phases) <= state["phase"]:
        phases.append(state["current"])
    return model, _record(spec, cfg, phases, state["seconds"], "cpu", complete=len(state["records"]) == len(plan))


RESUMABLE_FIELDS = ("max_epochs", "extra_epochs", "eval_every", "target_val_acc", "phase_extra_epochs")


def train_state(workdir: str | Path | None, spec: ModSumTrainSpec) -> checkpoint.TrainState:
    """The training state of ``spec`` in ``workdir``; its budget is the per-phase cap, and a raised
    cap continues a phase that stopped at the old one (``extendable``)."""
    return checkpoint.TrainState(workdir, budget=spec.max_epochs, what=f"training of {spec.model_id}", unit="epochs",
                                 extendable=True)


def load_state(keeper: checkpoint.TrainState, spec: ModSumTrainSpec) -> dict | None:
    """A saved training state for this spec, or None when there is none yet.

    A state saved for another model (any field but the stopping rules differs) is an
    error: resuming it would mix two trainings. A state in the layout before
    :class:`~layergw.torchkit.checkpoint.TrainState` is read as one (and saved in the new layout
    at the next save).
    """
    state = checkpoint.load_state(keeper.path) if keeper.path is not None else None
    if state is None:
        return None
    if "parts" not in state:  # the layout before one train state (weights and optimizer at the top): read as one
        state = {**{k: v for k, v in state.items() if k not in ("model", "heads", "optimizer")},
                 "parts": {k: state[k] for k in ("model", "heads", "optimizer")}, "step": state["epoch"],
                 "budget": state["spec"].get("max_epochs", spec.max_epochs), "rng_cpu": None, "rng_cuda": None,
                 "generator": None}
    keeper.check(state)
    ours = {k: v for k, v in asdict(spec).items() if k not in RESUMABLE_FIELDS}
    saved = {**asdict(ModSumTrainSpec(model_id=spec.model_id)), **state["spec"]}  # fields added since default
    theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k not in RESUMABLE_FIELDS}
    diff = sorted(k for k in ours if ours[k] != theirs.get(k))
    if diff:
        raise ValueError(f"training state {keeper.path} was saved for another spec (differs in {', '.join(diff)}); "
                         f"use another folder or delete it to start over")
    return state


def recipe(job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
    """A study's modsum train job: ``out/final/<job>.safetensors`` with its record and metrics.

    The training state stays in ``out`` until the checkpoint is written, so a killed job resumes
    where it stopped.
    """
    spec = spec_from_params(ModSumTrainSpec, params, f"train job {job_id!r} (modsum)",
                            fixed={"model_id": job_id, "seed": seed})
    model, record = train_modsum(spec, device=device, workdir=out, save_every=500)
    save_checkpoint(model, record, out / "final")
    write_metrics(out / "final", metrics_of(record))
    train_state(out, spec).clear()


PRESETS: dict[str, ModSumTrainSpec] = {
    "model_0": ModSumTrainSpec("model_0", task="f_mod", n_blocks=1, scheme="end_to_end", extra_epochs=1000),
    "model_E": ModSumTrainSpec("model_E", task="f_mod3", n_blocks=3, scheme="end_to_end", extra_epochs=1000),
    "model_L": ModSumTrainSpec("model_L", task="f_mod3", n_blocks=3, scheme="layerwise", extra_epochs=1000),
}
_REFERENCE = {"layout": "reference", "loss_dtype": "float64", "warmup_epochs": 10}
PRESETS.update({f"{k}_ref": ModSumTrainSpec(**{**asdict(v), "model_id": f"{k}_ref", **_REFERENCE})
                for k, v in list(PRESETS.items())})
# a departure from the paper: the reference recipe, and each layer-wise phase also regresses its
# targets' one-hot codes linearly, so the next block is handed every residue, not a few frequencies
PRESETS["model_L_handover"] = ModSumTrainSpec(**{**asdict(PRESETS["model_L_ref"]), "model_id": "model_L_handover",
                                                 "handover": "linear"})
# departures against softmax collapse (Prieto et al. 2025), one lever each: StableMax cross-entropy
# (the paper's weight decay kept), and ⊥AdamW without weight decay (with it, a gradient that can
# never lengthen the weights meets a decay that always shortens them: they shrink to nothing)
for _k in ("model_E", "model_L"):
    PRESETS[f"{_k}_stablemax"] = ModSumTrainSpec(**{**asdict(PRESETS[f"{_k}_ref"]), "model_id": f"{_k}_stablemax",
                                                    "loss": "stablemax"})
    PRESETS[f"{_k}_ortho"] = ModSumTrainSpec(**{**asdict(PRESETS[f"{_k}_ref"]), "model_id": f"{_k}_ortho",
                                                "optimizer": "ortho_adamw", "weight_decay": 0.0})

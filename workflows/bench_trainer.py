"""The ``trainer`` suite: seconds per epoch of layergw's modular-sum trainer beside a minimal
standalone trainer of the same model and recipe, both on one thread, one and three blocks.

The minimal trainer is the references' layout written as plainly as it goes (two tokens, no
mask, q/k/v in one product, the last block at the last position only, the forward pass on the
training split only, float64 loss, full-batch AdamW at the paper's settings): the bar layergw's
trainer must meet. Both run the same number of epochs from the same seed; the suite reports each
one's median seconds per epoch over ``repeats`` runs and their ratio.
"""
from __future__ import annotations

import math
import statistics
import time

#: (label, preset) of the models timed
MODELS = (("1 block (Model 0, references' layout)", "model_0_ref"),
          ("3 blocks (Model E, references' layout)", "model_E_ref"))


def minimal_epochs(spec, epochs: int) -> float:
    """Seconds per epoch of a minimal trainer of ``spec``'s model (the references' layout)."""
    import torch

    from layergw.data.modsum import make_modsum

    data = make_modsum(spec.task, train_fraction=spec.train_fraction, split_seed=spec.split_seed)
    torch.manual_seed(spec.seed)
    d, h, e, m, p = spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp, data.p
    classes = data.moduli[-1]

    def param(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape) / math.sqrt(scale)).requires_grad_()

    emb, pos = param(p, d, scale=d), param(2, d, scale=d)
    blocks = [dict(qkv=param(d, 3 * h * e, scale=d), o=param(h * e, d, scale=d), w_in=param(d, m, scale=m),
                   b_in=torch.zeros(m, requires_grad=True), w_out=param(m, d, scale=d),
                   b_out=torch.zeros(d, requires_grad=True)) for _ in range(spec.n_blocks)]
    head = param(d, classes, scale=classes)
    params = [emb, pos, head, *(t for b in blocks for t in b.values())]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=spec.betas)
    x = torch.as_tensor(data.inputs[data.train_idx])
    y = torch.as_tensor(data.targets[data.train_idx, -1])

    def block(r: torch.Tensor, b: dict, last: bool) -> torch.Tensor:
        n = r.shape[0]
        q, k, v = (r.reshape(2 * n, d) @ b["qkv"]).view(n, 2, 3, h, e).unbind(2)
        if last:
            q, r = q[:, 1:], r[:, 1:]
        pattern = torch.softmax((q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(e), dim=2)  # n q k h
        z = (pattern.unsqueeze(-1) * v.unsqueeze(1)).sum(2)
        r = r + (z.reshape(-1, h * e) @ b["o"]).view(n, -1, d)
        return r + torch.relu(r @ b["w_in"] + b["b_in"]) @ b["w_out"] + b["b_out"]

    t0 = time.perf_counter()
    for _ in range(epochs):
        r = emb[x] + pos
        for i, b in enumerate(blocks):
            r = block(r, b, i == len(blocks) - 1)
        loss = torch.nn.functional.cross_entropy((r[:, -1] @ head).double(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / epochs


def layergw_epochs(spec, epochs: int) -> float:
    """Seconds per epoch of layergw's trainer on ``spec``: its phase's own clock (the loop with one
    evaluation, at the end; setting up the data and the model left out, as for the minimal one)."""
    from dataclasses import replace

    from layergw.families.modsum.training import train_modsum

    _, record = train_modsum(replace(spec, max_epochs=epochs, eval_every=epochs))
    return sum(p["seconds"] for p in record["phases"]) / epochs


def bench_trainer(epochs: int = 40, repeats: int = 3) -> tuple[list[dict], list[dict]]:
    """(rows, history figures): median seconds per epoch of both trainers per model, one thread."""
    import torch

    from layergw.families.modsum.training import PRESETS

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, figures = [], []
    try:
        for label, preset in MODELS:
            spec = PRESETS[preset]
            times: dict[str, list[float]] = {"layergw": [], "minimal": []}
            for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both
                times["layergw"].append(layergw_epochs(spec, epochs))
                times["minimal"].append(minimal_epochs(spec, epochs))
            for trainer, values in times.items():
                rows.append({"model": label, "trainer": trainer, "epochs": epochs, "repeats": repeats,
                             "seconds_per_epoch": statistics.median(values), "spread": max(values) - min(values)})
            ratio = statistics.median(a / b for a, b in zip(times["layergw"], times["minimal"]))
            rows[-2]["over_minimal"] = ratio
            figures.append({"suite": "trainer", "figure": f"layergw's trainer over a minimal one, {label}",
                            "value": ratio, "unit": "x", "better": "lower"})
    finally:
        torch.set_num_threads(threads)
    return rows, figures

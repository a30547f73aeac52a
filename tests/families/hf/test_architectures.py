"""The architecture table read on a tiny random-init model of every architecture (the configs of
configs/zoo.yaml): Table-2 points by number and shape, and the points checked against the model
itself (its hidden states, the residual-stream algebra, attention as pattern times values)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from layergw.families.hf.architectures import ARCHITECTURES, lookup
from layergw.families.hf.capture import block_list, capture, head_counts, readers
from tests.families.hf.conftest import RANDOM, zoo_model

#: architectures whose attention logits are q k^T times a scale, plus a mask (no rotary or relative terms)
PLAIN_ATTENTION = ("bert", "roberta", "electra", "distilbert", "gpt2", "opt", "vit", "deit")


def _load(model_type: str, points: str = "heads"):
    return zoo_model(model_type, points)


def _raw(model, names: list[str]) -> tuple[dict[str, torch.Tensor], object, dict]:
    """Every point of ``names`` per token (unpooled) on four probe inputs, the model's output and inputs."""
    from layergw.points import RepPoint

    pts = [RepPoint(n, n, i, n) for i, n in enumerate(names)]
    where = readers(model.model, model.arch, pts)
    taken: dict[str, torch.Tensor] = {}
    rows, batch, _ = next(model._batches(np.arange(4), "cpu", 4))
    with torch.no_grad(), capture(model.model, where, taken.__setitem__):
        out = model.model(**batch, output_hidden_states=True, output_attentions=True)
    return taken, out, batch


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_fine_and_head_points_number_and_shapes(model_type: str) -> None:
    m = _load(model_type)
    cfg, L = m.model.config, m.n_blocks
    n, kv, dim = head_counts(cfg)
    per_block = 7 - (m.arch.residual == "parallel") + 3 * n + 2 * kv
    pts = m.points()
    assert L == 3 and len(pts) == L * per_block
    assert [p.index for p in pts] == list(range(len(pts)))
    X = m.extract(np.arange(6), pts)
    width = {"hook_resid_pre": cfg.hidden_size, "hook_attn_out": cfg.hidden_size, "hook_mlp_out": cfg.hidden_size,
             "hook_resid_post": cfg.hidden_size, "hook_resid_mid": cfg.hidden_size}
    keys = 32 if not m.vision else (cfg.image_size // cfg.patch_size) ** 2 + (2 if model_type == "deit" else 1)
    for p in pts:
        hook = p.name.split(".", 2)[2]
        expected = width.get(hook, dim if hook.startswith("attn.hook_") and "pattern" not in hook else
                             keys if "pattern" in hook else None)
        assert X[p.name].shape[0] == 6
        if expected is not None:
            assert X[p.name].shape[1] == expected, p.name
    d_mlp = {X[f"blocks.0.mlp.hook_{k}"].shape[1] for k in ("pre", "post")}
    assert len(d_mlp) == 1 and d_mlp.pop() > cfg.hidden_size
    for name, values in X.items():
        assert np.isfinite(values).all(), name


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_resid_post_is_the_models_own_hidden_state(model_type: str) -> None:
    m = _load(model_type, "fine")
    L = m.n_blocks
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(L)]
    taken, out, _ = _raw(m, names)
    hs = out.hidden_states
    torch.testing.assert_close(taken["blocks.0.hook_resid_pre"], hs[0])
    for b in range(L - 1):
        torch.testing.assert_close(taken[f"blocks.{b}.hook_resid_post"], hs[b + 1])
    last = taken[f"blocks.{L - 1}.hook_resid_post"]
    if m.arch.final_norm is not None and not m.vision:  # decoders return the last state after the final norm
        from layergw.families.hf.capture import module_path

        last = m.model.get_submodule(module_path(m.model, m.arch.final_norm, "final_norm"))(last)
    torch.testing.assert_close(last, hs[L])


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_points_obey_the_residual_stream_algebra(model_type: str) -> None:
    """Pre-norm: mid = pre + attn_out and post = mid + mlp_out; parallel: post = pre + attn_out +
    mlp_out; post-norm: mid = ln1(pre + attn_out) and post = ln2(mid + mlp_out)."""
    m = _load(model_type, "fine")
    b = 1
    hooks = ["hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post"]
    if m.arch.residual != "parallel":
        hooks.append("hook_resid_mid")
    taken, _, _ = _raw(m, [f"blocks.{b}.{h}" for h in hooks])
    t = {h: taken[f"blocks.{b}.{h}"] for h in hooks}
    if m.arch.residual == "parallel":
        torch.testing.assert_close(t["hook_resid_pre"] + t["hook_attn_out"] + t["hook_mlp_out"], t["hook_resid_post"])
        return
    if m.arch.residual == "pre_norm":
        torch.testing.assert_close(t["hook_resid_pre"] + t["hook_attn_out"], t["hook_resid_mid"])
        torch.testing.assert_close(t["hook_resid_mid"] + t["hook_mlp_out"], t["hook_resid_post"])
        return
    path, _ = block_list(m.model, m.arch)
    ln1 = m.model.get_submodule(f"{path}.{b}.{m.arch.ln1}")
    ln2 = m.model.get_submodule(f"{path}.{b}.{m.arch.ln2}")
    with torch.no_grad():
        torch.testing.assert_close(ln1(t["hook_resid_pre"] + t["hook_attn_out"]), t["hook_resid_mid"])
        torch.testing.assert_close(ln2(t["hook_resid_mid"] + t["hook_mlp_out"]), t["hook_resid_post"])


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_each_heads_z_is_its_pattern_times_its_values(model_type: str) -> None:
    """z_h = pattern_h v_(h's key-value head): the q/k/v split, the head order and grouped-query
    sharing all have to be right; where attention is plain (no rotary or relative terms) the
    pattern is also softmax(q k^T / sqrt(d)) under the mask."""
    m = _load(model_type, "heads")
    n, kv, dim = head_counts(m.model.config)
    names = [f"blocks.1.attn.{h}" for h in ("hook_q", "hook_k", "hook_v", "hook_z", "hook_pattern")]
    taken, _, batch = _raw(m, names)
    q, k, v, z, pattern = (taken[x] for x in names)
    assert q.shape[-2:] == (n, dim) and k.shape[-2:] == (kv, dim) and v.shape[-2:] == (kv, dim)
    assert pattern.shape[1] == n
    group = n // kv
    for h in range(n):
        torch.testing.assert_close(pattern[:, h] @ v[:, :, h // group], z[:, :, h], atol=1e-5, rtol=1e-4)
    if model_type in PLAIN_ATTENTION:
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / dim ** 0.5
        if "attention_mask" in batch:
            allowed = batch["attention_mask"].bool()[:, None, None, :].expand_as(logits)
            if m.arch.lm_head is not None:
                allowed = allowed & torch.ones(logits.shape[-2:], dtype=torch.bool).tril()
            logits = logits.masked_fill(~allowed, float("-inf"))
        torch.testing.assert_close(torch.softmax(logits, -1), pattern, atol=1e-5, rtol=1e-4)


def test_every_architecture_of_the_table_is_in_the_zoo() -> None:
    covered = {lookup(t).name for t in RANDOM}
    assert covered == {a.name for a in ARCHITECTURES}


def test_no_module_path_of_an_architecture_is_named_outside_the_table() -> None:
    """Every distinctive module path of the table (one with a '.' or '_'; single words such as
    'layers' are also plain words) appears as a string only in architectures.py (the modsum and
    ResNet9 models of layergw's own are not Hugging Face architectures)."""
    import ast
    import dataclasses
    from pathlib import Path

    from layergw.families.hf.architectures import split_site

    paths = set()
    for arch in ARCHITECTURES:
        for f in dataclasses.fields(arch):
            value = getattr(arch, f.name)
            if f.name in ("name", "model_types", "residual", "qkv_layout", "when", "min_blocks") or value is None:
                continue
            for v in (value if isinstance(value, tuple) else (value,)):
                paths.add(split_site(v)[0])
        for _, _, changes in arch.when:
            paths |= {split_site(v)[0] for v in changes.values() if isinstance(v, str) and v not in ("pre_norm",
                                                                                                   "post_norm")}
    root = Path(__file__).parents[3]
    found = []
    for p in sorted((root / "layergw").rglob("*.py")) + sorted((root / "workflows").rglob("*.py")):
        if p.name == "architectures.py" or "modsum" in p.parts or "resnet9" in p.parts:
            continue
        strings = {n.value for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str)}
        found += [f"{p.relative_to(root)}: {s!r}" for s in sorted(strings & paths) if "." in s or "_" in s]
    assert found == []

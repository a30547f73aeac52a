"""The modular-sum transformer's representation points and the identities between them."""
import numpy as np
import pytest
import torch

from layergw import measures
from layergw.data.modsum import make_modsum
from layergw.torchkit.hooks import extract
from layergw.families.modsum.model import ModSumConfig, ModSumTransformer, modsum_points
from layergw.points import select_points


@pytest.fixture(scope="module")
def model3():
    torch.manual_seed(0)
    return ModSumTransformer(ModSumConfig(n_blocks=3, head_sizes=(17,)))


@pytest.fixture(scope="module")
def reps(model3):
    data = make_modsum("f_mod3")
    x = torch.as_tensor(data.inputs[::29])
    return extract(model3, model3.representation_points(), [lambda: model3(x)])


def test_table2_points_31_per_block_93_for_three_blocks():
    assert len(modsum_points(1)) == 31
    pts = modsum_points(3)
    assert len(pts) == 93
    assert [p.index for p in pts] == list(range(93))
    assert len({p.name for p in pts}) == 93
    roles = {p.role for p in pts}
    assert roles == {"Resid-Pre", "Attn-Out", "Resid-Mid", "Pre", "Post", "MLP-out", "Resid-Post",
                     "k", "q", "Attn-Pre", "Attn", "v", "z"}
    assert sum(p.role == "z" for p in pts) == 12


def test_every_point_is_taken_as_float32_with_expected_width(reps, model3):
    n = len(next(iter(reps.values())))
    widths = {"Resid-Pre": 3 * 128, "Resid-Post": 3 * 128, "Pre": 3 * 512, "Post": 3 * 512,
              "k": 3 * 32, "z": 3 * 32, "Attn": 6, "Attn-Pre": 6}
    for p in model3.representation_points():
        X = reps[p.name]
        assert X.dtype == np.float32 and X.shape[0] == n
        if p.role in widths:
            assert X.shape[1] == widths[p.role], p.name


def test_masked_attention_entries_are_dropped_not_kept_as_minus_inf(reps):
    scores = reps["blocks.0.attn.hook_attn_scores.h1"]
    assert np.isfinite(scores).all()
    pattern = reps["blocks.1.attn.hook_pattern.h0"]
    # rows of the causal pattern sum to one: entries (0,0), (1,0..1), (2,0..2) in tril order
    np.testing.assert_allclose(pattern[:, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(pattern[:, 1] + pattern[:, 2], 1.0, rtol=1e-6)
    np.testing.assert_allclose(pattern[:, 3:].sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("block", [0, 1, 2])
def test_resid_mid_is_resid_pre_plus_attn_out(reps, block):
    b = f"blocks.{block}"
    np.testing.assert_allclose(reps[f"{b}.hook_resid_mid"], reps[f"{b}.hook_resid_pre"] + reps[f"{b}.hook_attn_out"],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [0, 1, 2])
def test_post_is_relu_of_pre(reps, block):
    b = f"blocks.{block}.mlp"
    np.testing.assert_array_equal(reps[f"{b}.hook_post"], np.maximum(reps[f"{b}.hook_pre"], 0))


@pytest.mark.parametrize("block", [0, 1])
@pytest.mark.parametrize("init", ["product", "identity"])
def test_resid_post_and_next_resid_pre_have_gw_zero(reps, block, init):
    X, Y = reps[f"blocks.{block}.hook_resid_post"], reps[f"blocks.{block + 1}.hook_resid_pre"]
    np.testing.assert_array_equal(X, Y)
    assert measures.get("gw", init=init).score(X, Y) == pytest.approx(0.0, abs=1e-10)


def test_z_is_pattern_weighted_values(reps):
    pat, v, z = (reps[f"blocks.0.attn.hook_{k}.h2"] for k in ("pattern", "v", "z"))
    v = v.reshape(-1, 3, 32)
    p = np.zeros((len(v), 3, 3), dtype=np.float32)
    p[:, np.tril_indices(3)[0], np.tril_indices(3)[1]] = pat
    np.testing.assert_allclose(z.reshape(-1, 3, 32), p @ v, rtol=1e-5, atol=1e-6)


def test_select_points_by_name_and_pattern_and_rejects_unknown():
    pts = modsum_points(2)
    assert [p.name for p in select_points(pts, ["blocks.1.hook_resid_post"])] == ["blocks.1.hook_resid_post"]
    assert len(select_points(pts, ["blocks.0.attn.*"])) == 24
    assert select_points(pts, "all") == pts
    with pytest.raises(ValueError, match="model_L: unknown representation point 'blocks.0.hook_resid_psot'.*did you mean"):
        select_points(pts, ["blocks.0.hook_resid_psot"], model="model_L")


def test_last_pooling_takes_the_answer_position_and_last_attention_row(model3):
    from layergw.points import with_pooling

    pts = with_pooling(select_points(model3.representation_points(), ["blocks.0.hook_resid_post",
                                                                      "blocks.0.attn.hook_pattern.h0",
                                                                      "blocks.0.attn.hook_attn_scores.h0"]), "last")
    x = torch.as_tensor(make_modsum("f_mod").inputs[:20])
    flat = extract(model3, select_points(model3.representation_points(), ["blocks.0.*"]), [lambda: model3(x)])
    last = extract(model3, pts, [lambda: model3(x)])
    np.testing.assert_array_equal(last["blocks.0.hook_resid_post"], flat["blocks.0.hook_resid_post"][:, -128:])
    np.testing.assert_array_equal(last["blocks.0.attn.hook_pattern.h0"], flat["blocks.0.attn.hook_pattern.h0"][:, 3:])
    assert np.isfinite(last["blocks.0.attn.hook_attn_scores.h0"]).all()
    meaned = {p.name: p.pooling for p in with_pooling(model3.representation_points(), "mean")}
    assert meaned["blocks.0.attn.hook_pattern.h0"] == "tril" and meaned["blocks.0.hook_resid_post"] == "mean"


@pytest.fixture(scope="module")
def ref_model():
    torch.manual_seed(0)
    return ModSumTransformer(ModSumConfig(n_blocks=2, head_sizes=(17,), layout="reference", n_ctx=2))


def test_reference_layout_reads_two_tokens_without_mask(ref_model):
    x = torch.as_tensor(make_modsum("f_mod3").inputs[:40])
    with torch.no_grad():
        first_pos = ref_model.blocks[0](ref_model.embed(x))[:, 0]
        swapped = x.clone()
        swapped[:, 1] = (swapped[:, 1] + 1) % 59
        first_pos_b = ref_model.blocks[0](ref_model.embed(swapped))[:, 0]
    assert ref_model.W_E.shape[0] == 59 and ref_model.embed(x).shape[1] == 2
    assert not torch.allclose(first_pos, first_pos_b), "without a mask position 0 sees b"
    assert all(h.bias is None for h in ref_model.heads)
    assert torch.count_nonzero(ref_model.blocks[0].mlp.W_in.bias) == 0


def test_reference_layout_takes_every_attention_entry(ref_model):
    pts = ref_model.representation_points()
    assert len(pts) == 62 and all(p.pooling == "flatten" for p in pts)
    data = make_modsum("f_mod3")
    x = torch.as_tensor(data.inputs[::31])
    reps = extract(ref_model, pts, [lambda: ref_model(x)])
    pattern = reps["blocks.1.attn.hook_pattern.h2"]
    assert pattern.shape[1] == 4
    np.testing.assert_allclose(pattern[:, :2].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pattern[:, 2:].sum(1), 1.0, rtol=1e-6)
    assert reps["blocks.0.attn.hook_q.h0"].shape[1] == 2 * 32


def test_reference_init_scales_follow_the_reference():
    torch.manual_seed(1)
    m = ModSumTransformer(ModSumConfig(n_blocks=1, head_sizes=(59,), layout="reference", n_ctx=2, d_mlp=2048))
    # entries randn / sqrt(fan): std 1/sqrt(d_mlp) for W_in, 1/sqrt(d_model) for W_out, 1/sqrt(classes) unembed
    assert m.blocks[0].mlp.W_in.weight.std().item() == pytest.approx(2048 ** -0.5, rel=0.02)
    assert m.blocks[0].mlp.W_out.weight.std().item() == pytest.approx(128 ** -0.5, rel=0.02)
    assert m.heads[0].weight.std().item() == pytest.approx(59 ** -0.5, rel=0.05)


def test_layout_and_context_length_must_agree():
    with pytest.raises(ValueError, match="layout 'reference' reads 2 tokens"):
        ModSumConfig(layout="reference")
    with pytest.raises(ValueError, match="layout must be one of"):
        ModSumConfig(layout="pizza")


def test_the_last_position_alone_equals_the_full_forward_at_the_last_position():
    import torch

    from layergw.families.modsum.model import ModSumConfig, ModSumTransformer

    for layout in ("eq_causal", "reference"):
        torch.manual_seed(0)
        cfg = ModSumConfig(n_blocks=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, layout=layout,
                           n_ctx=ModSumConfig.context_length(layout))
        model = ModSumTransformer(cfg)
        ab = torch.randint(0, 59, (50, 2))
        with torch.no_grad():
            full, fast = model(ab), model(ab, last_only=True)
        torch.testing.assert_close(fast[0], full[0], atol=1e-6, rtol=1e-6)

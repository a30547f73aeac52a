"""Small causal-LM training: it learns, saves and reloads exactly, and its arguments are checked."""
import json

import numpy as np
import pytest
import torch

from layergw.families.hf.lm import (
    RECORD_FILE,
    CausalLMSpec,
    load_causal_lm,
    load_tokenizer,
    train_causal_lm,
    unigram_perplexity,
)

torch.set_num_threads(1)

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32, "max_length": 24, "batch_size": 16,
        "lr": 1e-2, "warmup_steps": 2, "eval_every": 5, "eval_fraction": 0.1}


def short_texts(n: int = 200, seed: int = 0) -> list[str]:
    """Templated review sentences: learnable structure, varied words."""
    rng = np.random.default_rng(seed)
    things = ["food", "service", "pizza", "staff", "coffee", "room", "price", "music"]
    moods = ["great", "terrible", "good", "awful", "amazing", "bad", "fine", "slow"]
    return [f"the {rng.choice(things)} was {rng.choice(moods)} and the {rng.choice(things)} was {rng.choice(moods)} ."
            for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    spec = CausalLMSpec("tiny", steps=12, **TINY)
    record = train_causal_lm(spec, out, short_texts())
    return spec, out, record


def test_training_lowers_the_held_out_and_train_loss(trained):
    _, _, record = trained
    curve = record.eval_curve
    assert curve[0]["step"] == 0 and curve[-1]["step"] == 12
    assert curve[-1]["loss"] < curve[0]["loss"] - 1.0
    assert np.mean(record.train_loss[-3:]) < np.mean(record.train_loss[:3])
    assert len(record.train_loss) == 12
    assert record.n_train_texts + record.n_eval_texts == 200 and record.n_eval_texts == 20


def test_saved_model_reloads_with_identical_logits(trained):
    spec, out, _ = trained
    folder = out / spec.model_id
    model, tokenizer = load_causal_lm(folder)
    again, _ = load_causal_lm(folder)
    enc = tokenizer(["the pizza was great .", "the staff was slow and the music was bad ."],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(**enc).logits
        b = again(**enc).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.config.n_layer == spec.n_layer and model.config.vocab_size == len(tokenizer)
    assert tokenizer("the food was good")["input_ids"] == load_tokenizer()("the food was good")["input_ids"]


def test_reloaded_model_equals_trained_model_in_memory(tmp_path, monkeypatch):
    """Keep the in-memory model that training returns to; reloading it gives the same logits."""
    import layergw.families.hf.lm as lt

    kept = {}
    real_build = lt.build_model

    def keep_build(spec, tokenizer):
        kept["model"] = real_build(spec, tokenizer)
        return kept["model"]

    monkeypatch.setattr(lt, "build_model", keep_build)
    train_causal_lm(CausalLMSpec("mem", steps=3, **TINY), tmp_path, short_texts(60))
    reloaded, tokenizer = load_causal_lm(tmp_path / "mem")
    ids = torch.tensor([tokenizer("the coffee was amazing .")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, kept["model"].eval()(input_ids=ids).logits,
                                   rtol=0, atol=0)


def test_record_json_beside_the_model(trained):
    spec, out, record = trained
    data = json.loads((out / spec.model_id / RECORD_FILE).read_text())
    assert data["spec"]["model_id"] == "tiny" and data["spec"]["steps"] == 12
    assert data["eval_perplexity"] == pytest.approx(record.eval_perplexity)
    assert data["seconds"] > 0 and data["unigram_perplexity"] > 1
    assert (out / spec.model_id / "config.json").exists()
    assert (out / spec.model_id / "tokenizer_config.json").exists()


def test_same_seed_gives_same_training(tmp_path):
    texts = short_texts(60)
    a = train_causal_lm(CausalLMSpec("a", steps=3, **TINY), tmp_path, texts)
    b = train_causal_lm(CausalLMSpec("b", steps=3, **TINY), tmp_path, texts)
    assert a.train_loss == b.train_loss


def test_unigram_perplexity_of_uniform_tokens_is_vocab_size():
    train = [[0, 1, 2, 3]] * 10          # targets 1, 2, 3 equally often
    held = [[0, 3, 2, 1]]
    assert unigram_perplexity(train, held, vocab_size=4, alpha=1e-12) == pytest.approx(3.0)
    assert unigram_perplexity(train, held, vocab_size=4, alpha=1e9) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="alpha"):
        unigram_perplexity(train, held, vocab_size=4, alpha=0.0)


def test_bad_spec_and_inputs_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="max_length"):
        CausalLMSpec("x", n_positions=16, max_length=32)
    with pytest.raises(ValueError, match="n_embd"):
        CausalLMSpec("x", n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="model_id"):
        CausalLMSpec("a/b")
    with pytest.raises(ValueError, match="texts"):
        train_causal_lm(CausalLMSpec("x", **TINY), tmp_path, [])
    with pytest.raises(ValueError, match="tokenizer must be a local"):
        train_causal_lm(CausalLMSpec("x", tokenizer="gpt2", **TINY), tmp_path, ["a b c"])
    with pytest.raises(ValueError, match="config.json"):
        load_causal_lm(tmp_path / "nothing")


def test_a_killed_training_resumes_from_its_last_evaluation_to_the_same_model(trained, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import layergw.torchkit.checkpoint as ckpt

    spec, out, whole = trained
    real = ckpt.save_state
    steps = []

    def killed_at_the_second_save(path, state):
        real(path, state)
        steps.append(state["step"])
        if len(steps) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "save_state", killed_at_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        train_causal_lm(spec, tmp_path, short_texts(), workdir=tmp_path / "work")
    monkeypatch.setattr(ckpt, "save_state", real)
    resumed = train_causal_lm(spec, tmp_path, short_texts(), workdir=tmp_path / "work")
    assert steps == [5, 10]
    assert resumed.train_loss == whole.train_loss and resumed.eval_curve == whole.eval_curve
    a, b = load_file(str(out / "tiny" / "model.safetensors")), load_file(str(tmp_path / "tiny" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model_type", ["llama", "gpt_neox"])
def test_another_decoder_architecture_learns_and_reloads(tmp_path, model_type):
    spec = CausalLMSpec("other", model_type=model_type, steps=12, **TINY)
    record = train_causal_lm(spec, tmp_path, short_texts())
    assert record.eval_curve[-1]["loss"] < record.eval_curve[0]["loss"] - 1.0
    model, tokenizer = load_causal_lm(tmp_path / "other")
    assert model.config.model_type == model_type and model.config.num_hidden_layers == spec.n_layer
    ids = torch.tensor([tokenizer("the coffee was amazing .")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, load_causal_lm(tmp_path / "other")[0](input_ids=ids).logits,
                                   rtol=0, atol=0)


def test_an_encoder_model_type_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="model_type must be a decoder-only"):
        train_causal_lm(CausalLMSpec("enc", model_type="bert", steps=2, **TINY), tmp_path, short_texts(40))

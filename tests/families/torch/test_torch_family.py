"""The generic torch family on modules from a file of one's own: points read by hooks equal the
module's own computation, inputs of every kind, prune and freeze where the blocks allow, and
errors that name what is wrong."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from layergw import families
from layergw.families.base import Ablation

HERE = Path(__file__).parent
TINYNET = str(Path(__file__).parents[3] / "examples" / "torch_module" / "tinynet.py") + ":build"
STAGES = f"{HERE / 'user_models.py'}:stages"
TEXT = f"{HERE / 'user_models.py'}:text_mixer"
IMAGES = {"kind": "images", "source": "digits", "split": "test", "size": 16}
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return families.get("torch").load("random:0", factory=TINYNET, blocks="blocks", kwargs={"depth": 3},
                                      inputs=IMAGES)


def test_block_points_equal_the_modules_own_computation(tiny) -> None:
    assert [p.name for p in tiny.points()] == ["blocks.0:in", "blocks.0", "blocks.1", "blocks.2"]
    assert [tiny.depth(p) for p in tiny.points()] == [0.0, 1.0, 2.0, 3.0]
    idx = np.arange(7)
    X = tiny.extract(idx, tiny.points(), batch_size=3)
    net = tiny.module
    with torch.no_grad():
        h = net.stem(torch.as_tensor(tiny.inputs.x[idx])).flatten(2).transpose(1, 2)
        np.testing.assert_allclose(X["blocks.0:in"], h.flatten(1).numpy(), atol=1e-6)
        for b in range(3):
            h = net.blocks[b](h)
            np.testing.assert_allclose(X[f"blocks.{b}"], h.flatten(1).numpy(), atol=1e-5)
    y = tiny.targets(idx)["label"]
    assert y.shape == (7, 10) and (y.argmax(1) == tiny.inputs.labels[idx]).all()


def test_points_by_pattern_with_inputs_and_depths() -> None:
    m = families.get("torch").load("random:0", factory=TINYNET, blocks="blocks.*", inputs=IMAGES, pooling="mean",
                                   points=["stem", "blocks.*.mlp.1", "head:in", "head"])
    assert [p.name for p in m.points()] == ["stem", "blocks.0.mlp.1", "blocks.1.mlp.1", "blocks.2.mlp.1",
                                            "blocks.3.mlp.1", "head:in", "head"]
    assert [m.depth(p) for p in m.points()] == [0.0, 0.5, 1.5, 2.5, 3.5, 4.0, 4.0]
    X = m.extract(np.arange(5), m.points())
    assert X["stem"].shape == (5, 32) and X["blocks.0.mlp.1"].shape == (5, 64) and X["head"].shape == (5, 10)


def test_bad_params_fail_naming_them() -> None:
    fam = families.get("torch")
    with pytest.raises(ValueError, match=r"params\.factory .*cannot be imported"):
        fam.load("random:0", factory="no_such_module:build", blocks="blocks")
    with pytest.raises(ValueError, match=r"returned a int, not a torch nn\.Module"):
        fam.load("random:0", factory=f"{HERE / 'user_models.py'}:not_a_module", blocks="blocks")
    with pytest.raises(ValueError, match=r"params\.blocks 'block' is not a module of TinyNet; its sequences: blocks"):
        fam.load("random:0", factory=TINYNET, blocks="block", inputs=IMAGES)
    with pytest.raises(ValueError, match=r"params\.points: 'blocks\.\*\.mpl' matches no module"):
        fam.load("random:0", factory=TINYNET, blocks="blocks", inputs=IMAGES, points=["blocks.*.mpl"])
    with pytest.raises(ValueError, match=r"params\.inputs\.kind must be one of images, text, tensors"):
        fam.load("random:0", factory=TINYNET, blocks="blocks", inputs={"kind": "audio"})
    with pytest.raises(ValueError, match=r"torch checkpoint .*not found"):
        fam.load("/nowhere/w.safetensors", factory=TINYNET, blocks="blocks", inputs=IMAGES)


def test_weights_from_a_safetensors_file_are_loaded(tiny, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    trained = {k: v + 1.0 for k, v in tiny.module.state_dict().items()}
    save_file(trained, str(tmp_path / "w.safetensors"))
    m = families.get("torch").load(str(tmp_path / "w.safetensors"), factory=TINYNET, blocks="blocks",
                                   kwargs={"depth": 3}, inputs=IMAGES)
    assert all(torch.equal(v, trained[k]) for k, v in m.module.state_dict().items())
    assert families.get("torch").fingerprint(str(tmp_path / "w.safetensors")) != "random:0"


def test_a_prune_keeps_the_chosen_blocks_and_a_freeze_leaves_the_early_ones_bit_equal(tiny) -> None:
    from layergw.families.torch.ablation import _freeze, ablated

    net = ablated(tiny, Ablation("prune", (0, 2)))
    assert len(net.blocks) == 2 and torch.equal(net.blocks[1].mlp[0].weight, tiny.module.blocks[2].mlp[0].weight)
    frozen = ablated(tiny, Ablation("freeze", (0, 1, 2), first_trained=2))
    _freeze(frozen, tiny, 2)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    opt = torch.optim.SGD([p for p in frozen.parameters() if p.requires_grad], lr=0.5)
    x = torch.as_tensor(tiny.inputs.x[:8])
    torch.nn.functional.cross_entropy(frozen(x), torch.as_tensor(tiny.inputs.labels[:8])).backward()
    opt.step()
    after = frozen.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == (k.startswith("blocks.2.") or k.startswith("head.")), k
    metrics = families.get("torch").ablate(tiny, Ablation("prune", (1,)), {"epochs": 1}, "cpu")
    assert metrics.step == 23 and 0 <= metrics.accuracy <= 1  # 1,437 digits' train split in batches of 64


def test_blocks_that_change_shape_allow_only_the_first_n(tmp_path: Path) -> None:
    from layergw.families.torch.ablation import ablated

    m = families.get("torch").load("random:1", factory=STAGES, blocks="blocks", inputs=IMAGES)
    first = ablated(m, Ablation("prune", (0, 1)))
    out = first(torch.as_tensor(m.inputs.x[:3]))
    assert out.shape == (3, 10) and first.head.in_features == 16
    with pytest.raises(ValueError, match=r"change the shape of their input .* keeps the first N blocks only"):
        ablated(m, Ablation("prune", (0, 2)))
    with pytest.raises(ValueError, match=r"only the 'first' selector applies"):
        m.block_states(np.arange(4))
    metrics = families.get("torch").ablate(m, Ablation("prune", (0,)), {"epochs": 1, "batch_size": 128}, "cpu",
                                           workdir=tmp_path)
    assert 0 <= metrics.accuracy <= 1


def test_text_and_tensor_inputs(tmp_path: Path) -> None:
    fam = families.get("torch")
    text = fam.load("random:0", factory=TEXT, blocks="blocks", pooling="mean",
                    inputs={"kind": "text", "source": "sst2", "split": "dev", "max_rows": 20})
    X = text.extract(np.arange(6), text.points(), batch_size=4)
    assert all(v.shape == (6, 16) for v in X.values())
    alone = text.extract(np.arange(1), text.points())
    for name in X:  # padding never changes a pooled vector
        np.testing.assert_allclose(alone[name][0], X[name][0], atol=1e-5)
    x = np.random.default_rng(0).normal(size=(30, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(30) % 10)
    tensors = fam.load("random:0", factory=TINYNET, blocks="blocks",
                       inputs={"kind": "tensors", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy")})
    assert tensors.n_inputs() == 30 and tensors.targets(np.arange(3))["label"].shape == (3, 10)
    np.save(tmp_path / "short.npy", np.arange(5))
    with pytest.raises(ValueError, match=r"labels must hold one integer per row of path \(30\)"):
        fam.load("random:0", factory=TINYNET, blocks="blocks",
                 inputs={"kind": "tensors", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "short.npy")})


def test_blocks_inside_a_container_freeze_what_runs_before_them_and_not_the_container() -> None:
    from layergw.families.torch.ablation import _freeze, ablated

    m = families.get("torch").load("random:0", factory=f"{HERE / 'user_models.py'}:nested", blocks="encoder.layers",
                                   inputs=IMAGES, points=["encoder.inp", "encoder.layers.*", "head"])
    assert m.modules_before_blocks() == {"encoder.inp"}
    assert [m.depth(p) for p in m.points()] == [0.0, 1.0, 2.0, 3.0, 3.0]
    net = ablated(m, Ablation("freeze", (0, 1, 2), first_trained=1))
    _freeze(net, m, 1)
    trains = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trains == {"encoder.layers.1.weight", "encoder.layers.1.bias", "encoder.layers.2.weight",
                      "encoder.layers.2.bias", "head.weight", "head.bias"}

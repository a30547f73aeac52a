"""ResNet9 (the paper's Table 3): points, shapes, hooks against a functional re-implementation, residual sums,
and the ``resnet9`` adapter."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layergw import families
from layergw.torchkit.hooks import extract as hook_extract
from layergw.families.resnet9.checkpoint import random_checkpoint
from layergw.families.resnet9.model import ResNet9, ResNet9Config, random_resnet9, resnet9_points

torch.set_num_threads(1)

# The paper's Table 3, written out: module -> its layers, in order.
TABLE3 = [(0, ["Conv2d", "BatchNorm", "ReLU"]), (1, ["Conv2d", "BatchNorm", "ReLU"]),
          (2, ["Conv2d", "BatchNorm", "ReLU"]), (3, ["Conv2d", "BatchNorm", "ReLU"]),
          (4, ["Conv2d", "BatchNorm", "ReLU", "MaxPool"]), (5, ["Conv2d", "BatchNorm", "ReLU"]),
          (6, ["Conv2d", "BatchNorm", "ReLU"]), (7, ["Conv2d", "BatchNorm", "ReLU", "MaxPool"]), (8, ["Linear"])]

# Channels per module; spatial sizes from the strides and paddings: module 1 is k5 stride 2 padding 2,
# module 4 max-pools by 2, module 7's k3 conv is unpadded and its adaptive max pool goes to 1x1.
CHANNELS = {0: 64, 1: 128, 2: 128, 3: 128, 4: 256, 5: 256, 6: 256, 7: 128}


def table3_names(residual: bool) -> list[str]:
    names = []
    for m, layers in TABLE3:
        names += [f"{m}.{layer}" for layer in layers]
        if residual and m in (3, 6):
            names.append(f"{m}.Residual")
    return names


def expected_shape(name: str, size: int = 32) -> tuple[int, ...]:
    module, role = name.split(".")
    module = int(module)
    if module == 8:
        return (10,)
    s = size
    if module >= 1:
        s = (s + 2 * 2 - 5) // 2 + 1
    if module >= 5 or (module == 4 and role == "MaxPool"):
        s //= 2
    if module == 7:
        s = 1 if role == "MaxPool" else s - 2
    return (CHANNELS[module], s, s)


def test_expected_shapes_at_32_are_the_documented_ones():
    assert expected_shape("0.ReLU") == (64, 32, 32) and expected_shape("1.Conv2d") == (128, 16, 16)
    assert expected_shape("4.ReLU") == (256, 16, 16) and expected_shape("4.MaxPool") == (256, 8, 8)
    assert expected_shape("6.Residual") == (256, 8, 8) and expected_shape("7.BatchNorm") == (128, 6, 6)
    assert expected_shape("7.MaxPool") == (128, 1, 1)


def trained_like(seed: int = 0) -> ResNet9:
    """A random ResNet9 with non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    model = random_resnet9(seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def functional_points(model: ResNet9, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every point of Table 3 recomputed with torch.nn.functional from the state dict (eval mode)."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    geometry = {0: (1, 1), 1: (2, 2), 2: (1, 1), 3: (1, 1), 4: (1, 1), 5: (1, 1), 6: (1, 1), 7: (1, 0)}

    def unit(m: int, h: torch.Tensor) -> torch.Tensor:
        stride, pad = geometry[m]
        p = f"layers.{m}."
        out[f"{m}.Conv2d"] = h = F.conv2d(h, sd[p + "conv.weight"], stride=stride, padding=pad)
        out[f"{m}.BatchNorm"] = h = F.batch_norm(h, sd[p + "bn.running_mean"], sd[p + "bn.running_var"],
                                                 sd[p + "bn.weight"], sd[p + "bn.bias"], False, 0.0, 1e-5)
        out[f"{m}.ReLU"] = h = torch.clamp(h, min=0)
        if m == 4:
            out["4.MaxPool"] = h = F.max_pool2d(h, 2)
        if m == 7:
            out["7.MaxPool"] = h = h.amax(dim=(2, 3), keepdim=True)
        return h

    h = unit(1, unit(0, x))
    out["3.Residual"] = h = h + unit(3, unit(2, h))
    h = unit(4, h)
    out["6.Residual"] = h = h + unit(6, unit(5, h))
    h = unit(7, h).flatten(1)
    out["8.Linear"] = 0.2 * h @ sd["layers.8.weight"].T
    return out


@pytest.mark.parametrize("residual", [True, False])
def test_points_are_table3_in_depth_order(residual):
    points = resnet9_points(residual=residual)
    assert [p.name for p in points] == table3_names(residual)
    assert [p.index for p in points] == list(range(len(points)))
    assert len(points) == (29 if residual else 27)
    assert [p.block for p in points] == [int(p.name.split(".")[0]) for p in points]


def test_every_point_hooks_a_module_of_its_role():
    from torch import nn

    from layergw.families.resnet9.model import Add

    kinds = {"Conv2d": nn.Conv2d, "BatchNorm": nn.BatchNorm2d, "ReLU": nn.ReLU, "Residual": Add,
             "MaxPool": (nn.MaxPool2d, nn.AdaptiveMaxPool2d), "Linear": nn.Linear}
    model = ResNet9()
    hooked = {p.name: model.get_submodule(p.hook) for p in resnet9_points()}
    for name, module in hooked.items():
        assert isinstance(module, kinds[name.split(".")[1]]), (name, type(module).__name__)
    assert len({id(m) for m in hooked.values()}) == len(hooked)  # no two points share a module


@pytest.mark.parametrize("size", [32, 16])
def test_point_shapes_follow_the_down_sampling(size):
    model = random_resnet9(0)
    x = torch.randn(3, 3, size, size)
    shapes = {}
    handles = [model.get_submodule(p.hook).register_forward_hook(
        lambda _m, _i, o, name=p.name: shapes.__setitem__(name, tuple(o.shape[1:]))) for p in resnet9_points()]
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    assert logits.shape == (3, 10)
    assert shapes == {name: expected_shape(name, size) for name in table3_names(True)}


def test_hooked_points_equal_a_functional_reimplementation():
    model = trained_like(1)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reference = functional_points(model, x)
    got = hook_extract(model, resnet9_points(), [lambda: model(x)])
    for name, ref in reference.items():
        np.testing.assert_allclose(got[name], ref.reshape(4, -1).numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
    with torch.no_grad():
        np.testing.assert_allclose(got["8.Linear"], model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_residual_block_with_zeroed_conv_adds_a_constant_to_its_input():
    model = trained_like(2)
    with torch.no_grad():
        model.layers[3].conv.weight.zero_()
    bn = model.layers[3].bn
    const = torch.relu(bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps))
    x = torch.randn(2, 3, 32, 32)
    got = hook_extract(model, [p for p in resnet9_points() if p.name in ("1.ReLU", "3.Residual")],
                       [lambda: model(x)])
    block_in = got["1.ReLU"].reshape(2, 128, 16, 16)
    block_out = got["3.Residual"].reshape(2, 128, 16, 16)
    np.testing.assert_allclose(block_out - block_in, np.broadcast_to(const.detach().numpy()[None, :, None, None],
                                                                     block_in.shape), atol=1e-5)


def test_random_init_depends_only_on_the_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = random_resnet9(7), random_resnet9(7), random_resnet9(8)
    after = torch.rand(3)
    assert torch.equal(before, after)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.layers[0].conv.weight, c.layers[0].conv.weight)
    assert not a.training


def test_too_small_or_wrong_channel_inputs_are_value_errors():
    model = random_resnet9(0)
    with pytest.raises(ValueError, match="H, W >= 12"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="3"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        ResNet9Config(num_classes=1)


# ---- the adapter -------------------------------------------------------------------------------

def test_adapter_is_registered_with_its_parameters():
    assert "resnet9" in families.names()
    assert set(families.get("resnet9").load_parameters()) == {"data", "split", "size", "pooling", "residual_points"}
    with pytest.raises(ValueError, match="pooling"):
        families.get("resnet9").load("random:0", pooling="max")
    with pytest.raises(ValueError, match="integer seed"):
        families.get("resnet9").load("random:x")
    with pytest.raises(ValueError, match="not found"):
        families.get("resnet9").load("/nonexistent/model.safetensors")


def test_adapter_extract_gives_float32_rows_per_point_and_one_hot_labels():
    adapter = families.get("resnet9").load("random:0", size=16)
    idx = np.array([0, 5, 7, 100, 359])
    points = adapter.points()
    reps = adapter.extract(idx, points, batch_size=2)
    assert list(reps) == [p.name for p in points]
    for p in points:
        assert reps[p.name].dtype == np.float32
        assert reps[p.name].shape == (len(idx), int(np.prod(expected_shape(p.name, 16)))), p.name
    y = adapter.targets(idx)["label"]
    assert y.dtype == np.float32 and y.shape == (len(idx), 10)
    np.testing.assert_array_equal(y.sum(1), 1.0)
    np.testing.assert_array_equal(y.argmax(1), adapter.data.labels[idx])
    assert adapter.n_inputs() == len(adapter.data) == 360  # 20% of the 1,797 digits
    assert adapter.describe()["trained"] is False


def test_adapter_logits_point_equals_the_models_output():
    adapter = families.get("resnet9").load("random:3", size=16)
    idx = np.arange(10)
    got = adapter.extract(idx, [p for p in adapter.points() if p.name == "8.Linear"])["8.Linear"]
    with torch.no_grad():
        want = adapter.model(torch.as_tensor(adapter.data.images[idx])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_random_checkpoint_is_deterministic_and_matches_its_file(tmp_path):
    idx = np.arange(6)
    a = families.get("resnet9").load("random:4", size=16)
    b = families.get("resnet9").load("random:4", size=16)
    c = families.get("resnet9").load("random:5", size=16)
    path = random_checkpoint(4, tmp_path)
    d = families.get("resnet9").load(str(path), size=16, data="digits")
    ra, rb, rc, rd = (m.extract(idx, a.points()) for m in (a, b, c, d))
    for name in ra:
        np.testing.assert_array_equal(ra[name], rb[name])
        np.testing.assert_array_equal(ra[name], rd[name])
    assert not np.allclose(ra["8.Linear"], rc["8.Linear"])


def test_adapter_points_equal_the_functional_reimplementation_on_its_probe_images(tmp_path):
    model = trained_like(5)
    from layergw.families.resnet9.checkpoint import save_checkpoint

    path = save_checkpoint(model, {"model_id": "m", "trained": True, "model_config": model.cfg.to_dict()}, tmp_path)
    adapter = families.get("resnet9").load(str(path), size=16)
    idx = np.array([3, 1, 4, 15, 92, 65])
    got = adapter.extract(idx, adapter.points(), batch_size=4)
    reference = functional_points(model, torch.as_tensor(adapter.data.images[idx]))
    assert set(reference) == set(got)
    for name, ref in reference.items():
        np.testing.assert_allclose(got[name], ref.reshape(len(idx), -1).numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_avg_pooling_is_the_spatial_mean_of_the_flattened_output():
    flat = families.get("resnet9").load("random:0", size=16)
    avg = families.get("resnet9").load("random:0", size=16, pooling="avg", residual_points=False)
    assert len(avg.points()) == 27
    idx = np.arange(4)
    rf = flat.extract(idx, flat.points())
    ra = avg.extract(idx, avg.points())
    for p in avg.points():
        shape = expected_shape(p.name, 16)
        want = rf[p.name].reshape(len(idx), *shape)
        want = want.mean(axis=(2, 3)) if len(shape) == 3 else want
        np.testing.assert_allclose(ra[p.name], want, rtol=1e-5, atol=1e-6, err_msg=p.name)
    assert ra["0.Conv2d"].shape == (4, 64)


def test_extract_refuses_token_poolings_before_running():
    from dataclasses import replace

    adapter = families.get("resnet9").load("random:0", size=16)
    bad = [replace(adapter.points()[0], pooling="last")]
    with pytest.raises(ValueError, match="0.Conv2d"):
        adapter.extract(np.arange(2), bad)


def test_extract_leaves_the_model_mode_and_hooks_as_they_were():
    adapter = families.get("resnet9").load("random:0", size=16)
    adapter.model.train()
    adapter.extract(np.arange(3), adapter.points())
    assert adapter.model.training
    assert all(not m._forward_hooks for m in adapter.model.modules())


def test_depth_puts_each_modules_output_after_it_and_it_has_no_residual_stream():
    model = families.get("resnet9").load("random:0", data="digits", size=12)
    depth = {p.name: model.depth(p) for p in model.points()}
    assert (depth["0.Conv2d"], depth["0.ReLU"], depth["1.ReLU"]) == (0.5, 1.0, 2.0)
    assert (depth["3.ReLU"], depth["3.Residual"], depth["4.ReLU"], depth["4.MaxPool"]) == (3.5, 4.0, 4.5, 5.0)
    assert (depth["7.MaxPool"], depth["8.Linear"], model.n_blocks) == (8.0, 8.0, 8)
    with pytest.raises(ValueError, match="no residual stream"):
        model.block_states(np.arange(4))

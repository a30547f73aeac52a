"""One pooling for every family: token sequences (with and without a padding mask), attention
matrices, feature maps."""
import numpy as np
import pytest
import torch

from layergw.points import RepPoint
from layergw.torchkit.pooling import check_pooling, pool


def point(pooling: str, head: int | None = None, head_axis: int = 2) -> RepPoint:
    return RepPoint("p", "P", 0, "m", head=head, pooling=pooling, head_axis=head_axis)


@pytest.mark.parametrize("side", ["left", "right"])
def test_masked_pooling_uses_only_real_tokens(side: str) -> None:
    t = torch.randn(2, 5, 3)
    mask = torch.zeros(2, 5, dtype=torch.long)
    for r, n in enumerate([2, 5]):
        if side == "right":
            mask[r, :n] = 1
        else:
            mask[r, 5 - n:] = 1
    for r in range(2):
        real = t[r][mask[r].bool()]
        np.testing.assert_allclose(pool(t, point("first"), mask)[r], real[0])
        np.testing.assert_allclose(pool(t, point("last"), mask)[r], real[-1])
        np.testing.assert_allclose(pool(t, point("mean"), mask)[r], real.mean(0), atol=1e-6)


def test_unmasked_sequences_pool_over_every_position():
    t = torch.randn(4, 3, 2)
    np.testing.assert_allclose(pool(t, point("last")), t[:, -1])
    np.testing.assert_allclose(pool(t, point("first")), t[:, 0])
    np.testing.assert_allclose(pool(t, point("mean")), t.mean(1), atol=1e-6)
    assert pool(t, point("flatten")).shape == (4, 6)


def test_tril_keeps_the_causally_unmasked_entries_of_one_head():
    scores = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)  # (batch, head, q, k)
    out = pool(scores, point("tril", head=1, head_axis=1))
    expected = scores[:, 1][:, [0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]]
    np.testing.assert_array_equal(out, expected)


def test_feature_maps_average_over_space_and_refuse_token_poolings():
    maps = torch.randn(2, 4, 3, 3)
    np.testing.assert_allclose(pool(maps, point("mean")), maps.mean((2, 3)), atol=1e-6)
    assert pool(maps, point("flatten")).shape == (2, 36)
    with pytest.raises(ValueError, match="feature map pools by 'flatten' or 'mean'"):
        check_pooling(point("last"), 4)


def test_pooled_vectors_are_float32_on_the_cpu():
    out = pool(torch.randn(3, 2, 4, dtype=torch.float64), point("mean"))
    assert out.dtype == torch.float32 and out.device.type == "cpu"

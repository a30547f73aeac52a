"""Streamed extraction: the files equal one pass over every input, values are checked batch by
batch, and a batch that changes shape is refused."""
from __future__ import annotations

import numpy as np
import pytest

from workflows.extract import stream_points


@pytest.fixture(scope="module")
def model_0():
    from layergw import families

    return families.get("modsum").load("builtin:model_0")


def test_streamed_point_files_equal_one_pass_over_every_input(model_0, tmp_path) -> None:
    points = model_0.points()[:6]
    indices = np.arange(0, 3481, 70)[:50]
    widths, constant = stream_points(model_0, indices, points, "cpu", tmp_path, "m0", batch=7)  # 7 does not divide 50
    assert constant == [False] * len(points)
    whole = model_0.extract(indices, points)
    for k, p in enumerate(points):
        got = np.load(tmp_path / f"{k}.npy")
        assert got.shape == whole[p.name].shape == (50, widths[k]) and got.dtype == whole[p.name].dtype
        # equal but for float32 rounding: a batch of one row takes another BLAS path (1 ulp)
        np.testing.assert_allclose(got, whole[p.name], rtol=1e-6, atol=1e-6)


class Scripted:
    """A loaded model whose extract returns what each batch is given to return."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def extract(self, indices, points, *, device="cpu"):
        return {"p": next(self.batches)(len(indices))}


class Point:
    name = "p"


def test_a_nan_in_a_later_batch_and_a_batch_of_another_width_are_refused_naming_the_point(tmp_path) -> None:
    ok = lambda m: np.ones((m, 4), np.float32)  # noqa: E731
    nan = lambda m: np.full((m, 4), np.nan, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"model 'm', point 'p' contains NaN/Inf at 12 entries"):
        stream_points(Scripted([ok, nan]), np.arange(6), [Point()], "cpu", tmp_path, "m", batch=3)
    wide = lambda m: np.ones((m, 5), np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"model 'm', point 'p': inputs 3\.\.5 gave shape \(3, 5\) float32, "
                                         r"expected \(3, 4\) float32"):
        stream_points(Scripted([ok, wide]), np.arange(6), [Point()], "cpu", tmp_path, "m", batch=3)
    short = lambda m: np.ones((m - 1, 4), np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"inputs 3\.\.5 gave shape \(2, 4\)"):  # a model that drops rows
        stream_points(Scripted([ok, short]), np.arange(6), [Point()], "cpu", tmp_path, "m", batch=3)
    with pytest.raises(ValueError, match=r"model 'm', point 'p' has n=2 rows"):
        stream_points(Scripted([ok]), np.arange(2), [Point()], "cpu", tmp_path, "m", batch=3)


def test_a_point_equal_for_every_input_is_found_constant_across_batches(tmp_path) -> None:
    row = np.linspace(-3, 3, 4, dtype=np.float32)
    same = lambda m: np.tile(row, (m, 1))  # noqa: E731
    later = lambda m: np.vstack([np.tile(row, (m - 1, 1)), row + 1e-3])  # noqa: E731
    assert stream_points(Scripted([same, same]), np.arange(6), [Point()], "cpu", tmp_path, "m", batch=3)[1] == [True]
    assert stream_points(Scripted([same, later]), np.arange(6), [Point()], "cpu", tmp_path, "m", batch=3)[1] == [False]

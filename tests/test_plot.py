"""PNG figures: heatmaps of L×L matrices and ranked bars."""
from __future__ import annotations

import io

import numpy as np
import pytest

from layergw import plot

PNG = b"\x89PNG"


@pytest.mark.parametrize("L", [5, 93])
def test_heatmap_writes_png(tmp_path, L):
    rng = np.random.default_rng(L)
    M = rng.random((L, L))
    M = (M + M.T) / 2
    np.fill_diagonal(M, 0)
    path = tmp_path / f"h{L}.png"
    plot.heatmap_png(M, [f"B1 layer {i}" for i in range(L)], str(path), title=f"L={L}",
                      boundaries=[L // 3, 2 * L // 3], max_ticks=40, measure="gw")
    assert path.read_bytes().startswith(PNG)


def test_group_boundaries_are_drawn_between_the_groups_layers():
    """A boundary b (the first layer of a group) is a red line between rows and columns b-1 and
    b, read back from the figure's lines and from its pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from layergw.grouping import boundaries

    labels = np.repeat([0, 1, 2], [4, 3, 5])
    bounds = boundaries(labels)
    assert bounds == [4, 7]
    M = (labels[:, None] != labels[None, :]).astype(float)
    fig = plot.heatmap_figure(M, [f"l{i}" for i in range(12)], title="t", boundaries=bounds)
    ax = fig.axes[0]
    red = [line for line in ax.lines if line.get_color() == "red"]
    horizontal = sorted(line.get_ydata()[0] for line in red if line.get_ydata()[0] == line.get_ydata()[1])
    vertical = sorted(line.get_xdata()[0] for line in red if line.get_xdata()[0] == line.get_xdata()[1])
    assert horizontal == vertical == [3.5, 6.5]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    red_px = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    height = pixels.shape[0]

    def red_column(x: float) -> int:  # red pixels in the pixel columns at x (+-1 for rounding)
        c = int(round(x))
        return int(red_px[:, c - 1:c + 2].any(axis=1).sum())

    def red_row(y: float) -> int:
        r = height - int(round(y))
        return int(red_px[r - 1:r + 2].any(axis=0).sum())

    for b in bounds:
        x, y = ax.transData.transform((b - 0.5, b - 0.5))
        assert red_column(x) > 50 and red_row(y) > 50, b
    x, y = ax.transData.transform((1.0, 1.0))  # the middle of layer 1, inside the first group
    assert red_column(x) < 5 and red_row(y) < 5


def test_heatmap_handles_nan_and_buffer():
    M = np.array([[0, 1, np.nan], [1, 0, 2], [np.nan, 2, 0]])
    buf = io.BytesIO()
    plot.heatmap_png(M, ["a", "b", "c"], buf, title="nan", kind="distance")
    assert buf.getvalue().startswith(PNG)
    data = plot.png_bytes(plot.heatmap_png, np.full((3, 3), np.nan), ["a", "b", "c"], title="all nan",
                           kind="similarity")
    assert data.startswith(PNG)


def test_heatmap_rejects_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        plot.heatmap_png(np.zeros((3, 3)), ["a"], io.BytesIO(), title="x")
    with pytest.raises(ValueError, match="square"):
        plot.heatmap_png(np.zeros((3, 2)), ["a", "b", "c"], io.BytesIO(), title="x")


def test_bars_png():
    buf = io.BytesIO()
    plot.bars_png([0.3, np.nan, 0.1, 0.2], ["a", "b", "c", "d"], buf, title="target c1", top=2)
    assert buf.getvalue().startswith(PNG)


def test_values_spanning_orders_of_magnitude_are_drawn_as_log10():
    from layergw.plot import _log_if_wide

    M = np.array([[0.0, 1e-2, 1e4], [1e-2, 0.0, 5.0], [1e4, 5.0, 0.0]])
    logged, used = _log_if_wide(M)
    assert used
    np.testing.assert_allclose(logged[0, 2], 4.0)
    assert logged[0, 0] == pytest.approx(-2.0)  # zero diagonal shown as the smallest value
    narrow, used = _log_if_wide(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert not used
    with_nan = M.copy()
    with_nan[0, 1] = with_nan[1, 0] = np.nan
    assert np.isnan(_log_if_wide(with_nan)[0][0, 1])


def test_rounding_noise_of_identical_layers_does_not_force_a_log_scale():
    from layergw.plot import _log_if_wide

    M = np.array([[0.0, 1e-16, 0.5], [1e-16, 0.0, 0.9], [0.5, 0.9, 0.0]])
    assert not _log_if_wide(M)[1]


def test_series_png_draws_series_of_different_lengths_and_refuses_mismatched_ones() -> None:
    from layergw.plot import series_png

    buf = io.BytesIO()
    series_png({"short": ([1, 2], [0.1, 0.2]), "long": ([1, 2, 3, 4], [0.1, 0.5, 0.7, 0.9])}, buf,
               title="t", xlabel="epoch", ylabel="accuracy")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="series 'bad' needs as many y as x"):
        series_png({"bad": ([1, 2, 3], [0.1, 0.2])}, io.BytesIO(), title="t", xlabel="x", ylabel="y")

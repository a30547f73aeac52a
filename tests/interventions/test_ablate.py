"""Which blocks each layer-drop rule removes, on block states whose answer is known."""
import numpy as np
import pytest

from layergw.interventions.ablate import angular_distances, block_influence, select_blocks


def stream(turns: list[float], rows: int = 50, d: int = 8, seed: int = 0) -> list[np.ndarray]:
    """A residual stream that each block rotates by the given angle (radians) in one plane."""
    h = np.random.default_rng(seed).normal(size=(rows, d))
    h[:, :2] = np.abs(h[:, :2]) + 1.0
    states = [h]
    for t in turns:
        R = np.eye(d)
        R[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        states.append(states[-1] @ R.T)
    return states


def test_block_influence_is_one_minus_the_cosine_of_input_and_output():
    bi = block_influence(stream([0.0, 0.3, 0.0, 0.1]))
    assert bi[0] == pytest.approx(0.0, abs=1e-12) and bi[2] == pytest.approx(0.0, abs=1e-12)
    assert bi[1] > bi[3] > 0
    h = np.random.default_rng(1).normal(size=(20, 4))
    assert block_influence([h, -h])[0] == pytest.approx(2.0)


def test_angular_distance_of_a_window_adds_its_turns_in_one_plane():
    A = angular_distances(stream([0.2, 0.0, 0.4]))
    assert A[1, 2] == pytest.approx(0.0, abs=1e-7)
    assert A[0, 3] > A[0, 1] and A[0, 3] == A[3, 0]


@pytest.mark.parametrize("selector, keep", [
    ("first", (0, 1, 2)), ("last", (0, 1, 5)), ("random", None),
    ("block_influence", (0, 3, 5)), ("angular", (0, 1, 5)),
])
def test_each_selector_keeps_three_of_six(selector, keep):
    # blocks 1, 2 and 4 turn least alone; the window 2-4 turns least together
    states = stream([0.5, 0.05, 0.0, 0.3, 0.0, 0.6])
    got = select_blocks(selector, 6, 3, seed=7, influence=block_influence(states), angular=angular_distances(states))
    assert len(got) == 3 and list(got) == sorted(got)
    if keep is not None:
        assert got == keep
    else:  # a contiguous window dropped, the same for the same seed
        dropped = sorted(set(range(6)) - set(got))
        assert dropped == list(range(dropped[0], dropped[0] + 3))
        assert got == select_blocks("random", 6, 3, seed=7)


def test_full_depth_and_zero_depth_are_the_same_for_every_selector():
    for selector in ("first", "last", "random"):
        assert select_blocks(selector, 4, 4) == (0, 1, 2, 3) and select_blocks(selector, 4, 0) == ()


def test_bad_selectors_and_depths_are_named():
    with pytest.raises(ValueError, match="unknown selector 'angle' \\(did you mean 'angular'\\?\\)"):
        select_blocks("angle", 4, 2)
    with pytest.raises(ValueError, match="kept depth must be in 0..4"):
        select_blocks("first", 4, 5)
    with pytest.raises(ValueError, match="block_influence needs one Block Influence per block"):
        select_blocks("block_influence", 4, 2)

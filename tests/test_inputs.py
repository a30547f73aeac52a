"""The input set every family draws: seeded, sorted, reproducible."""
import numpy as np
import pytest

from layergw.inputs import input_indices, one_hot


def test_input_indices_are_a_seeded_sorted_subsample():
    i1, i2 = input_indices(3481, 100, seed=1), input_indices(3481, 100, seed=1)
    np.testing.assert_array_equal(i1, i2)
    assert len(set(i1)) == 100 and np.all(np.diff(i1) > 0)
    assert not np.array_equal(i1, input_indices(3481, 100, seed=2))
    assert len(input_indices(10, 50, seed=0)) == 10
    with pytest.raises(ValueError, match="inputs.n must be positive"):
        input_indices(10, 0, seed=0)


def test_one_hot_rows_mark_each_label_once():
    oh = one_hot(np.array([2, 0, 1, 2]), 3)
    assert oh.dtype == np.float32 and oh.shape == (4, 3)
    np.testing.assert_array_equal(oh.argmax(1), [2, 0, 1, 2])
    np.testing.assert_array_equal(oh.sum(1), 1.0)

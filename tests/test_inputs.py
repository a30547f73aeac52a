"""The input set every family draws: seeded, sorted, reproducible."""
import numpy as np
import pytest

from layergw.inputs import input_indices, one_hot, split_pool


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


def test_a_pool_restricts_the_draw_and_the_full_pool_is_the_plain_draw():
    np.testing.assert_array_equal(input_indices(500, 40, 3, pool=np.arange(500)), input_indices(500, 40, 3))
    pool = np.arange(0, 500, 7)
    drawn = input_indices(500, 40, 3, pool=pool)
    assert len(drawn) == 40 and set(drawn) <= set(pool) and np.all(np.diff(drawn) > 0)
    np.testing.assert_array_equal(input_indices(500, 1000, 3, pool=pool[::-1]), pool)


def test_split_pool_names_the_splits_a_model_has():
    splits = {"train": np.arange(10), "validation": np.arange(10, 13)}
    assert split_pool(splits, "all", "m") is None
    np.testing.assert_array_equal(split_pool(splits, "validation", "m"), np.arange(10, 13))
    with pytest.raises(ValueError, match=r"model 'r': inputs.split 'train' needs a model whose inputs have a train "
                                         r"split \(its splits: none\)"):
        split_pool({}, "train", "model 'r'")
    with pytest.raises(ValueError, match="inputs.split must be one of all, train, validation"):
        split_pool(splits, "test", "m")

import numpy as np
import pytest

from layergw.data.modsum import chained_targets, make_modsum
from layergw.inputs import one_hot


def test_f_mod3_chains_each_step_on_the_previous_with_b():
    data = make_modsum("f_mod3")
    a, b = data.inputs[:, 0], data.inputs[:, 1]
    c1 = (a + b) % 59
    c2 = (c1 + b) % 31
    c = (c2 + b) % 17
    np.testing.assert_array_equal(data.targets, np.stack([c1, c2, c], axis=1))
    assert data.target_names() == ["c1", "c2", "c"]


def test_f_mod_covers_all_pairs_once_with_final_target_named_c():
    data = make_modsum("f_mod")
    assert len(data.inputs) == 59 * 59
    assert len({tuple(r) for r in data.inputs}) == 59 * 59
    assert data.target_names() == ["c"]


def test_split_is_80_20_disjoint_and_reproducible_from_its_seed():
    d1, d2, d3 = make_modsum("f_mod", split_seed=3), make_modsum("f_mod", split_seed=3), make_modsum("f_mod", split_seed=4)
    assert len(d1.train_idx) == round(0.8 * 3481)
    assert not set(d1.train_idx) & set(d1.val_idx)
    assert len(d1.train_idx) + len(d1.val_idx) == 3481
    np.testing.assert_array_equal(d1.train_idx, d2.train_idx)
    assert not np.array_equal(d1.train_idx, d3.train_idx)


def test_unknown_task_names_valid_ones():
    with pytest.raises(ValueError, match="f_mod3"):
        make_modsum("f_mod4")


def test_chained_targets_and_one_hot_agree():
    t = chained_targets(np.array([58]), np.array([3]), (59, 31))
    assert t.tolist() == [[2, 5]]
    oh = one_hot(np.array([0, 2]), 3)
    assert oh.tolist() == [[1, 0, 0], [0, 0, 1]]

"""What a block hands the next: ridge R² of residue features, on outputs whose answer is known."""
import numpy as np
import pytest

from layergw.data.modsum import make_modsum
from layergw.families.modsum.handover import fourier_features, handover, residue


def test_fourier_features_are_the_cos_and_sin_of_each_frequency():
    F = fourier_features(np.array([0, 1, 30, 31]), 31)
    assert F.shape == (4, 30)
    np.testing.assert_allclose(F[0], [1.0] * 15 + [0.0] * 15)
    np.testing.assert_allclose(F[1, 2], np.cos(2 * np.pi * 3 / 31))
    np.testing.assert_allclose(F[3], F[0], atol=1e-12)  # 31 is 0 modulo 31


def test_an_output_holding_one_frequency_exactly_gives_it_all_and_the_rest_nothing():
    data = make_modsum("f_mod3")
    c1 = residue(data, "c1")
    k3 = fourier_features(c1, 31)[:, [2, 17]]  # cos and sin of frequency 3 of c1 modulo 31
    noise = np.random.default_rng(0).normal(size=(len(c1), 6))
    rows = {(r.quantity, r.modulus): r for r in handover({"x": np.hstack([k3, noise])}, data, 0)}
    c1_31 = rows[("c1", 31)]
    assert c1_31.best_k == 3 and c1_31.best_r2 == pytest.approx(1.0, abs=2e-3)  # ridge shrinks a little
    assert c1_31.r2 == pytest.approx(1 / 15, abs=0.01)  # one frequency of fifteen
    assert rows[("c2", 17)].best_r2 < 0.05 and rows[("b", 31)].best_r2 < 0.05


def test_outputs_must_cover_every_input():
    data = make_modsum("f_mod")
    with pytest.raises(ValueError, match="has 10 rows; the task has 3481 inputs"):
        handover({"last": np.zeros((10, 4))}, data, 0)

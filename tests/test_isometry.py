"""What GW to a one-hot target can see: a layer that encodes another variable with the target's
class structure is as close to it as the target's own variable; probes and CKA tell them apart."""
from __future__ import annotations

import numpy as np
import pytest

from layergw.isometry import classes, same_class_structure, synthetic_check


def test_classes_counts_distinct_rows_to_a_relative_tolerance() -> None:
    X = np.repeat(np.eye(3) * 5.0, [2, 3, 4], axis=0)
    assert classes(X) == 3 and classes(X + 1e-9) == 3 and classes(np.arange(12.0).reshape(6, 2)) == 6
    target = np.eye(3)[[0, 0, 1, 1, 1, 2, 2, 2, 2]]
    assert same_class_structure(X, target) and not same_class_structure(np.eye(9), target)
    wide = np.eye(40)[np.arange(200) % 40]
    assert same_class_structure(np.eye(40)[np.arange(200) % 37], wide)  # a subsample short of a few values
    assert not same_class_structure(np.eye(40)[np.arange(200) % 20], wide)
    with pytest.raises(ValueError, match=r"non-empty \(n, d\) array"):
        classes(np.zeros(3))


def test_gw_cannot_tell_b_from_c1_where_the_probes_and_cka_can() -> None:
    rows = {r["layer"]: r for r in synthetic_check(n=240, seed=0)}
    own, b = rows["c1 one-hot (the target's variable)"], rows["b one-hot"]
    every = rows["(a, b) embedding (every input its own)"]
    assert max(own["gw_mean"], b["gw_mean"]) < 0.3 * every["gw_mean"]  # both nearly isometric to the target
    assert b["same_class_structure"] and not rows["c2 one-hot (31 classes)"]["same_class_structure"]
    assert not every["same_class_structure"]
    assert rows["b embedding"]["gw_mean"] < rows["c1 embedding"]["gw_mean"] * 1.5  # GW ranks them alike
    assert own["linear_probe_error"] < 0.2 < 0.9 < b["linear_probe_error"]
    assert own["mlp_probe_error"] < 0.05 < 0.9 < b["mlp_probe_error"]
    assert rows["c1 embedding"]["cka"] > 0.5 > 0.2 > b["cka"]

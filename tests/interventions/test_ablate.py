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


# -- reading a grid ----------------------------------------------------------------------------

def grid_table(prune: dict, freeze: dict, model: str = "m", n_blocks: int = 4, seeds=(0, 1), spread=0.0):
    """ABLATIONS-like rows: prune {(N, selector): accuracy}, freeze {k: accuracy}."""
    import pandas as pd

    rows = []
    for seed in seeds:
        jitter = spread * (1 if seed % 2 else -1)
        for (n, sel), acc in prune.items():
            rows.append({"model": model, "ablation": "prune", "kept_blocks": n, "first_trained_block": 0,
                         "selector": sel, "n_blocks": n_blocks, "seed": seed, "metric": "accuracy",
                         "value": acc + jitter})
        for k, acc in freeze.items():
            rows.append({"model": model, "ablation": "freeze", "kept_blocks": n_blocks, "first_trained_block": k,
                         "selector": "first", "n_blocks": n_blocks, "seed": seed, "metric": "accuracy",
                         "value": acc + jitter})
        rows.append({**rows[-1], "metric": "loss", "value": 1.0})
    return pd.DataFrame(rows)


PRUNE = {(0, "first"): 0.1, (1, "first"): 0.3, (2, "first"): 0.95, (3, "first"): 0.995, (4, "first"): 1.0,
         (2, "last"): 0.5, (3, "last"): 0.9}
FREEZE = {0: 1.0, 1: 0.998, 2: 0.97, 3: 0.6, 4: 0.2}


def test_summary_knees_and_measure_ranking():
    from layergw.interventions.ablate import accuracy_summary, knees, measure_ranking, prune_plan

    s = accuracy_summary(grid_table(PRUNE, FREEZE, spread=0.002))
    full = s[(s["ablation"] == "prune") & (s["kept_blocks"] == 4)].iloc[0]
    assert full["mean"] == pytest.approx(1.0) and full["std"] == pytest.approx(0.002 * np.sqrt(2)) and full["count"] == 2
    assert knees(s, "m") == {"prune": 3, "freeze": 1}
    cuts = {"m": {("gw", "{}", "segment"): [1, 3], ("cka", "{}", "segment"): [2], ("rsm", "{}", "segment"): []}}
    ranking, detail = measure_ranking(s, cuts)
    # gw proposes prune 3 and freeze 1, the knees; rsm (no boundary) is as far off as cka but loses nothing
    assert list(ranking["measure"]) == ["gw", "rsm", "cka"]
    gw = detail[detail["measure"] == "gw"].set_index("ablation")
    assert (gw.loc["prune", "proposed"], gw.loc["freeze", "proposed"]) == (3, 1)
    assert gw.loc["prune", "distance"] == 0 and gw.loc["prune", "accuracy_lost"] == pytest.approx(0.005)
    rsm = detail[detail["measure"] == "rsm"].set_index("ablation")
    assert (rsm.loc["prune", "proposed"], rsm.loc["freeze", "proposed"]) == (4, 0)  # no boundary: keep everything
    plan = prune_plan(s, "m", [1, 3])
    assert plan["kept_blocks"] == 3 and plan["holds"] and plan["baselines"] == {"last": pytest.approx(0.9)}
    assert not prune_plan(s, "m", [2])["holds"]  # dropping two blocks loses 5 points


def test_plan_cells_covers_the_grid_once_per_selector_and_seed():
    from layergw.interventions.ablate import plan_cells

    cells = plan_cells(4, ["prune", "freeze"], [2, 2, 3], ["first", "last", "random"], [0, 1])
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    prune = sorted({(len(c.ablation.keep), c.selector) for c in cells if c.ablation.kind == "prune"})
    assert prune == [(0, "first"), (2, "first"), (2, "last"), (2, "random"), (3, "first"), (3, "last"),
                     (3, "random"), (4, "first")]
    assert sorted({c.ablation.first_trained for c in cells if c.ablation.kind == "freeze"}) == [0, 2, 3, 4]
    assert {c.ablation.seed for c in cells} == {0, 1}
    with pytest.raises(ValueError, match=r"ablate\[0\]: depths \[5\] are outside 0..4"):
        plan_cells(4, ["prune"], [5], ["first"], [0], where="ablate[0]")


def test_boundary_cuts_keep_the_whole_blocks_before_each_boundary():
    import pandas as pd

    from layergw.interventions.ablate import boundary_cuts

    depths = {0: 0.0, 1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0}
    groups = pd.DataFrame({"measure": "gw", "params": "{}", "method": "segment", "layer_index": range(5),
                           "boundary": [False, False, True, False, True]})
    # a group starting at block 0's output (depth 1) is made by block 0: keep none; at block 1's output, keep 1
    assert boundary_cuts(groups, depths) == {("gw", "{}", "segment"): [0, 1]}
    inside = groups.assign(boundary=[False, True, False, True, False])  # inside block b: keep the b before it
    assert boundary_cuts(inside, depths) == {("gw", "{}", "segment"): [0, 1]}
    unknown = {i: d for i, d in depths.items() if i != max(depths)}  # a boundary point without a depth
    assert boundary_cuts(groups, unknown) == {("gw", "{}", "segment"): [0]}  # it makes no cut, and no KeyError


def test_the_papers_bert_groups_cut_at_eight_blocks():
    """Twelve block outputs (depths 1..12), blocks 9-12 splitting off: prune to N = 8 (PAPER.md),
    and the first group frozen is blocks 1-8."""
    import pandas as pd

    from layergw.interventions.ablate import blocks_before, boundary_cuts, proposals

    depths = {i: float(i + 1) for i in range(12)}
    groups = pd.DataFrame({"measure": "gw", "params": "{}", "method": "segment", "layer_index": range(12),
                           "boundary": [i == 8 for i in range(12)]})
    cuts = boundary_cuts(groups, depths)[("gw", "{}", "segment")]
    assert cuts == [8] and proposals(cuts, 12) == {"prune": 8, "freeze": 8}
    assert [blocks_before(d) for d in (0.0, 0.5, 1.0, 2.5, 3.0)] == [0, 0, 0, 2, 2]


def test_the_full_model_is_checked_against_the_checkpoint_within_the_seed_spread_or_tolerance():
    import pandas as pd

    from layergw.interventions.ablate import REFERENCE, TOLERANCE, accuracy_summary, full_check, knees

    def with_checkpoint(acc: float, spread: float) -> pd.DataFrame:
        grid = grid_table(PRUNE, FREEZE, spread=spread)
        ref = {"model": "m", "ablation": REFERENCE, "kept_blocks": 4, "first_trained_block": 4,
               "selector": REFERENCE, "n_blocks": 4, "seed": 0, "metric": "accuracy", "value": acc}
        return pd.concat([grid, pd.DataFrame([ref])], ignore_index=True)

    s = accuracy_summary(with_checkpoint(0.995, 0.0))
    assert knees(s, "m") == {"prune": 3, "freeze": 1}  # the checkpoint row is not a grid cell
    check = full_check(s, "m")
    assert check["difference"] == pytest.approx(0.005) and check["holds"]  # within the tolerance
    far = full_check(accuracy_summary(with_checkpoint(0.95, 0.0)), "m")
    assert far["difference"] == pytest.approx(0.05) and not far["holds"]
    # a spread wider than the tolerance widens what counts as the same: std of +-0.04 is 0.057
    wide = full_check(accuracy_summary(with_checkpoint(0.95, 0.04)), "m")
    assert wide["spread"] > 0.05 > TOLERANCE and wide["holds"]
    assert full_check(accuracy_summary(grid_table(PRUNE, FREEZE)), "m") is None  # no checkpoint row


def test_reference_rows_are_the_unmodified_checkpoint_or_none():
    from layergw.families.base import Metrics
    from layergw.interventions.ablate import REFERENCE, reference_rows

    rows = reference_rows("m", Metrics(step=0, accuracy=0.9, loss=0.3, split="validation"), 3, "builtin:x")
    assert {(r["metric"], r["value"]) for r in rows} == {("accuracy", 0.9), ("loss", 0.3)}
    assert all(r["ablation"] == REFERENCE and r["kept_blocks"] == 3 and r["keep"] == "[0, 1, 2]"
               and r["epochs"] == 0 for r in rows)
    assert reference_rows("m", None, 3, "builtin:x") == []


def test_matching_the_checkpoint_is_required_only_of_one_that_reached_its_goal():
    import pandas as pd

    from layergw.interventions.ablate import REFERENCE, accuracy_summary, full_check, goal_reached

    grid = grid_table(PRUNE, FREEZE)
    ref = {"model": "m", "ablation": REFERENCE, "kept_blocks": 4, "first_trained_block": 4, "selector": REFERENCE,
           "n_blocks": 4, "seed": 0}
    table = pd.concat([grid, pd.DataFrame([{**ref, "metric": "accuracy", "value": 0.8},
                                           {**ref, "metric": "goal_reached", "value": 0.0}])], ignore_index=True)
    assert goal_reached(table, "m") is False and goal_reached(grid, "m") is None
    check = full_check(accuracy_summary(table), "m", goal=goal_reached(table, "m"))
    assert not check["holds"] and not check["required"] and check["difference"] > 0  # the recipe trains it further
    assert full_check(accuracy_summary(table), "m")["required"]  # a family that records no goal: required

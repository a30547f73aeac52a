"""Modular-sum training: phases, freezing, checkpoints."""
import json

import pytest
import torch

from layergw.data.modsum import make_modsum
from layergw.families.modsum.checkpoint import load_checkpoint, save_checkpoint
from layergw.torchkit.checkpoint import STATE_FILE
from layergw.families.modsum.model import ModSumTransformer
from layergw.families.modsum.training import (
    PRESETS,
    ModSumTrainSpec,
    load_state,
    train_state,
    model_config,
    phase_plan,
    train_modsum,
)

SMALL = dict(d_model=16, n_heads=2, d_head=8, d_mlp=32, eval_every=1)


def test_layerwise_plan_predicts_c_k_and_b_then_c():
    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=3, scheme="layerwise")
    plan = phase_plan(spec, make_modsum("f_mod3"))
    assert [p[0] for p in plan] == [[0], [1], [2]]
    assert [p[2] for p in plan] == [["c1", "b"], ["c2", "b"], ["c"]]
    assert [p[1] for p in plan] == [[59, 59], [31, 59], [17]]


def test_end_to_end_plan_trains_all_blocks_on_final_target():
    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=3)
    assert phase_plan(spec, make_modsum("f_mod3")) == [([0, 1, 2], [17], ["c"])]


def test_layerwise_freezes_earlier_blocks_and_embeddings():
    snaps = {}

    def keep(phase, model):
        snaps[phase] = {k: v.clone() for k, v in model.state_dict().items()}

    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=5, **SMALL)
    model, record = train_modsum(spec, on_phase_end=keep)
    assert len(record["phases"]) == 2
    final = model.state_dict()
    frozen = [k for k in final if k.startswith(("blocks.0.", "W_E", "W_pos"))]
    assert frozen
    for k in frozen:
        assert torch.equal(final[k], snaps[0][k]), k
    assert not torch.equal(final["blocks.1.mlp.W_in.weight"], snaps[0]["blocks.1.mlp.W_in.weight"])


def test_training_lowers_the_loss():
    spec = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=30, **SMALL)
    _, record = train_modsum(spec)
    hist = record["phases"][0]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_checkpoint_round_trip_keeps_outputs_and_records_accuracy(tmp_path):
    spec = ModSumTrainSpec("tiny", task="f_mod", n_blocks=1, max_epochs=3, **SMALL)
    model, record = train_modsum(spec)
    save_checkpoint(model, record, tmp_path)
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["spec"]["max_epochs"] == 3 and 0.0 <= meta["final_val_acc"] <= 1.0
    assert meta["phases"][0]["epochs"] == 3
    loaded, _ = load_checkpoint(tmp_path / "tiny")
    x = torch.as_tensor(make_modsum("f_mod").inputs[:50])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # multi-threaded CPU backward sums in varying order; one thread makes training bitwise repeatable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_resume(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_resume(tmp_path):
    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=4, **SMALL)
    straight, _ = train_modsum(spec)

    def stop_in_phase_2(msg):
        if "phase 2/2 epoch 3" in msg:
            raise _Stop

    try:
        train_modsum(spec, workdir=tmp_path, save_every=2, progress=stop_in_phase_2)
    except _Stop:
        pass
    resumed, record = train_modsum(spec, workdir=tmp_path, save_every=2)
    assert [p["epochs"] for p in record["phases"]] == [4, 4]
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_a_raised_epoch_cap_continues_the_last_phase_as_if_never_stopped(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec4 = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=4, **SMALL)
        spec6 = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=6, **SMALL)
        straight, _ = train_modsum(spec6)
        _, first = train_modsum(spec4, workdir=tmp_path)
        assert first["complete"] and first["phases"][0]["epochs"] == 4
        _, same = train_modsum(spec4, workdir=tmp_path)  # same cap: nothing more to do
        assert same["phases"][0]["epochs"] == 4
        continued, record = train_modsum(spec6, workdir=tmp_path)
        assert record["complete"] and [p["epochs"] for p in record["phases"]] == [6]
        assert [h["epoch"] for h in record["phases"][0]["history"]] == [1, 2, 3, 4, 5, 6]
        for k, v in straight.state_dict().items():
            torch.testing.assert_close(continued.state_dict()[k], v, rtol=0, atol=0, msg=k)

        # layer-wise: only the last phase goes on; block 1 stays as phase 1 left it
        lw4 = ModSumTrainSpec("l", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=4, **SMALL)
        lw6 = ModSumTrainSpec("l", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=6, **SMALL)
        before, _ = train_modsum(lw4, workdir=tmp_path / "l")
        after, record = train_modsum(lw6, workdir=tmp_path / "l")
        assert [p["epochs"] for p in record["phases"]] == [4, 6]
        for k, v in before.state_dict().items():
            if k.startswith("blocks.0.") or k in ("W_E", "W_pos"):
                torch.testing.assert_close(after.state_dict()[k], v, rtol=0, atol=0, msg=k)
        assert not torch.equal(after.state_dict()["blocks.1.mlp.W_in.weight"], before.state_dict()["blocks.1.mlp.W_in.weight"])
    finally:
        torch.set_num_threads(threads)


def test_state_of_another_spec_is_refused(tmp_path):
    spec = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=2, **SMALL)
    state = tmp_path / STATE_FILE
    train_modsum(spec, workdir=tmp_path, save_every=1)
    assert state.exists()
    other = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=2, **{**SMALL, "d_mlp": 64})
    with pytest.raises(ValueError, match="d_mlp"):
        train_modsum(other, workdir=tmp_path)


def test_export_of_an_unfinished_state_is_marked_incomplete(tmp_path):
    from layergw.families.modsum.training import export_state

    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=3, **SMALL)

    def stop_in_phase_2(msg):
        if "phase 2/2 epoch 2" in msg:
            raise _Stop

    try:
        train_modsum(spec, workdir=tmp_path, save_every=1, progress=stop_in_phase_2)
    except _Stop:
        pass
    model, record = export_state(spec, tmp_path)
    assert record["complete"] is False
    assert [p["phase"] for p in record["phases"]] == [0, 1]
    assert record["phases"][1]["epochs"] == 1
    done, final = train_modsum(spec, workdir=tmp_path)
    assert final["complete"] is True and export_state(spec, tmp_path)[1]["complete"] is True


@pytest.mark.slow
def test_model_0_preset_reaches_the_papers_accuracy(tmp_path):
    """The paper's Model 0 recipe trains to 100% train and >= 99% validation accuracy (minutes)."""
    from layergw.families.modsum.training import PRESETS

    spec = PRESETS["model_0"]
    spec = ModSumTrainSpec(**{**spec.__dict__, "extra_epochs": 0})
    _, record = train_modsum(spec, workdir=tmp_path)
    assert record["final_train_acc"] == 1.0 and record["final_val_acc"] >= 0.99


def test_progress_names_the_epoch_cap_and_the_time_left():
    spec = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=4, **{**SMALL, "eval_every": 2})
    seen = []
    train_modsum(spec, progress=seen.append)
    assert len(seen) == 2
    assert "epoch 2/4" in seen[0] and "left in this phase" in seen[0]
    assert seen[1].endswith("(at most 0m00s left in this phase)")


def test_warmup_starts_at_rate_zero_as_the_reference():
    spec = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=1, warmup_epochs=10, **SMALL)
    torch.manual_seed(spec.seed)
    untrained = ModSumTransformer(model_config(spec, make_modsum("f_mod"), [([0], [59], ["c"])]))
    trained, _ = train_modsum(spec)
    for k, v in untrained.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[k], v, rtol=0, atol=0, msg=k)
    moved, _ = train_modsum(ModSumTrainSpec(**{**spec.__dict__, "max_epochs": 2}))
    assert not torch.equal(moved.W_E, untrained.W_E)


def test_reference_preset_is_bitwise_repeatable_with_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = ModSumTrainSpec(**{**PRESETS["model_L_ref"].__dict__, "max_epochs": 2, "eval_every": 1})
        assert (spec.layout, spec.loss_dtype, spec.warmup_epochs) == ("reference", "float64", 10)
        first, record = train_modsum(spec)
        second, _ = train_modsum(spec)
    finally:
        torch.set_num_threads(threads)
    assert record["model_config"]["layout"] == "reference" and len(record["phases"]) == 3
    for k, v in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_a_state_saved_before_the_reference_options_still_resumes(tmp_path):
    spec = ModSumTrainSpec("m", task="f_mod", n_blocks=1, max_epochs=2, **SMALL)
    state_path = tmp_path / STATE_FILE
    train_modsum(spec, workdir=tmp_path)
    state = torch.load(state_path, weights_only=False)
    for k in ("layout", "loss_dtype", "warmup_epochs"):
        del state["spec"][k]
    torch.save(state, state_path)
    assert load_state(train_state(tmp_path, spec), spec)["epoch"] == 2
    with pytest.raises(ValueError, match="layout"):
        load_state(train_state(tmp_path, spec), ModSumTrainSpec(**{**spec.__dict__, "layout": "reference"}))


def test_training_only_the_first_phase_keeps_snapshots_at_the_goal_and_on_schedule(tmp_path):
    from dataclasses import replace

    from layergw.families.modsum.checkpoint import load_checkpoint
    from layergw.families.modsum.training import snapshot_saver

    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=4, **SMALL)
    seen = []
    saver = snapshot_saver(spec, tmp_path, every=3)

    def keep(phase, rec, model):
        seen.append((phase, replace(rec, history=[])))
        saver(phase, rec, model)

    model, record = train_modsum(spec, phases=1, on_eval=keep)
    assert [p["phase"] for p in record["phases"]] == [0] and record["complete"] is False
    assert [r.epochs for _, r in seen] == [1, 2, 3, 4] and {p for p, _ in seen} == {0}
    assert sorted(p.stem for p in tmp_path.glob("*.safetensors")) == ["p1-e00003"]  # on schedule
    saver(0, replace(seen[1][1], reached_goal_at=2), model)  # the epoch a phase first reaches its goal
    assert sorted(p.stem for p in tmp_path.glob("*.safetensors")) == ["p1-e00002", "p1-e00003"]
    snap, meta = load_checkpoint(tmp_path / "p1-e00003")
    assert meta["snapshot"]["epoch"] == 3 and meta["complete"] is False
    assert meta["snapshot"]["goal"] is False and load_checkpoint(tmp_path / "p1-e00002")[1]["snapshot"]["goal"]
    with pytest.raises(ValueError, match="phases must be between 1 and 2"):
        train_modsum(spec, phases=3)


def test_a_per_phase_weight_decay_changes_only_its_phase():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = dict(task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=3, **SMALL)
        uniform, _ = train_modsum(ModSumTrainSpec("m", weight_decay=2.0, **base))
        second, _ = train_modsum(ModSumTrainSpec("m", weight_decay=2.0, phase_weight_decay=(2.0, 0.0), **base))
        first, _ = train_modsum(ModSumTrainSpec("m", weight_decay=2.0, phase_weight_decay=(0.0, 2.0), **base))
    finally:
        torch.set_num_threads(threads)
    block0 = [k for k in uniform.state_dict() if k.startswith("blocks.0.")]
    block1 = [k for k in uniform.state_dict() if k.startswith("blocks.1.")]
    assert all(torch.equal(uniform.state_dict()[k], second.state_dict()[k]) for k in block0)
    assert not all(torch.equal(uniform.state_dict()[k], second.state_dict()[k]) for k in block1)
    assert not all(torch.equal(uniform.state_dict()[k], first.state_dict()[k]) for k in block0)
    with pytest.raises(ValueError, match=r"phase_weight_decay must give one value >= 0 per phase \(2 for this scheme\)"):
        ModSumTrainSpec("m", phase_weight_decay=(1.0,), **base)


def test_a_linear_handover_adds_a_regression_of_the_one_hot_codes_to_each_early_phase(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = dict(task="f_mod3", n_blocks=2, scheme="layerwise", max_epochs=3, **SMALL)
        head, record = train_modsum(ModSumTrainSpec("m", **base))
        linear, lrecord = train_modsum(ModSumTrainSpec("m", handover="linear", **base), workdir=tmp_path)
        resumed, _ = train_modsum(ModSumTrainSpec("m", handover="linear", **base), workdir=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert len(lrecord["phases"]) == 2 and lrecord["phases"][0]["targets"] == ["c1", "b"]
    assert not torch.equal(head.blocks[0].mlp.W_in.weight, linear.blocks[0].mlp.W_in.weight)  # trained otherwise
    assert len(linear.heads) == 1 and set(linear.state_dict()) == set(head.state_dict())  # the aid is not kept
    for k, v in linear.state_dict().items():  # the finished state reloads to the same model
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert "model_L_handover" in PRESETS and PRESETS["model_L_handover"].handover == "linear"
    with pytest.raises(ValueError, match="handover must be 'head' or 'linear'"):
        ModSumTrainSpec("m", handover="wide", **base)


def test_a_layerwise_run_resumed_between_phases_ends_as_an_uninterrupted_one(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=3, scheme="layerwise", max_epochs=2, **SMALL)
        straight, _ = train_modsum(spec)
        train_modsum(spec, workdir=tmp_path, phases=1)  # stops after phase 1: its new heads come next
        resumed, record = train_modsum(spec, workdir=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert record["complete"] and len(record["phases"]) == 3
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_stablemax_cross_entropy_is_its_definition_and_near_softmax_for_small_logits():
    from layergw.families.modsum.training import cross_entropy

    torch.manual_seed(0)
    logits, y = torch.randn(6, 5, dtype=torch.float64) * 3, torch.tensor([0, 1, 2, 3, 4, 0])
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits))  # s(x) of Prieto et al.
    expected = -torch.log(s[torch.arange(6), y] / s.sum(1)).mean()
    torch.testing.assert_close(cross_entropy(logits, y, "stablemax"), expected)
    small = logits * 1e-3  # s(x) = 1 + x + O(x^2) = exp(x) + O(x^2)
    torch.testing.assert_close(cross_entropy(small, y, "stablemax"), cross_entropy(small, y), atol=1e-5, rtol=0)


def test_orthogonal_gradients_have_no_part_along_the_weights_and_keep_their_norm():
    from layergw.families.modsum.training import orthogonal_gradients

    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    p.grad = torch.randn(4, 3, dtype=torch.float64) + 0.5 * p.detach()
    norm = p.grad.norm().item()
    orthogonal_gradients([p])
    assert abs((p.grad * p).sum().item()) < 1e-12 and p.grad.norm().item() == pytest.approx(norm)


def test_a_model_e_step_with_stablemax_and_ortho_adamw_trains():
    spec = ModSumTrainSpec("m", task="f_mod3", n_blocks=2, max_epochs=3, loss="stablemax", optimizer="ortho_adamw",
                           **SMALL)
    _, record = train_modsum(spec)
    losses = [h["loss"] for h in record["phases"][0]["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] and record["spec"]["loss"] == "stablemax"
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'ortho_adamw'"):
        ModSumTrainSpec("m", optimizer="sgd")

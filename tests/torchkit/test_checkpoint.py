"""Checkpoint and training-state files: atomic, complete, and never unpickling code."""
import pickle

import pytest
import torch

from layergw.torchkit.checkpoint import load_checkpoint, load_state, save_checkpoint, save_state


class _Payload:
    """An object whose unpickling would run code (here: it only records that it ran)."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return "ran"


def test_a_pickled_payload_in_a_state_file_is_refused(tmp_path):
    path = tmp_path / "m.state.pt"
    torch.save({"epoch": 3, "model": {"w": torch.ones(2)}, "evil": _Payload()}, path)
    with pytest.raises(ValueError, match="holds objects other than tensors and plain data"):
        load_state(path)
    assert not _Payload.ran
    assert pickle.loads(pickle.dumps(_Payload())) == "ran"  # the payload is live: refusing it mattered


def test_state_round_trip_and_absent_state(tmp_path):
    state = {"epoch": 7, "spec": {"betas": (0.9, 0.98)}, "w": torch.arange(3.0), "history": [{"loss": 0.5}]}
    save_state(tmp_path / "s.pt", state)
    back = load_state(tmp_path / "s.pt")
    assert back["epoch"] == 7 and back["spec"]["betas"] == (0.9, 0.98) and back["history"] == [{"loss": 0.5}]
    torch.testing.assert_close(back["w"], state["w"])
    assert load_state(tmp_path / "none.pt") is None
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary file left


def test_checkpoint_round_trip_writes_json_last(tmp_path):
    weights = {"a": torch.randn(2, 3), "b": torch.zeros(4)}
    path = save_checkpoint(weights, {"model_id": "m", "x": 1}, tmp_path, "m")
    assert path == tmp_path / "m.safetensors"
    loaded, record = load_checkpoint(tmp_path / "m")
    assert record == {"model_id": "m", "x": 1}
    for k, v in weights.items():
        torch.testing.assert_close(loaded[k], v)
    (tmp_path / "m.json").unlink()
    with pytest.raises(ValueError, match="m.json does not exist"):
        load_checkpoint(tmp_path / "m", "modular-sum checkpoint")


def _net_and_opt(seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    return net, torch.optim.AdamW(net.parameters(), lr=0.1)


def _step(net, opt) -> None:
    net(torch.randn(4, 3)).pow(2).sum().backward()  # draws from torch's generator
    opt.step()
    opt.zero_grad()


def test_a_train_state_restores_the_parts_the_generators_and_the_record(tmp_path):
    import numpy as np

    from layergw.torchkit.checkpoint import STATE_FILE, TrainState

    net, opt = _net_and_opt(0)
    gen, npgen = torch.Generator().manual_seed(5), np.random.default_rng(7)
    state = TrainState(tmp_path, budget=10, what="training")
    assert state.resume({"net": net, "opt": opt}) is None and state.path == tmp_path / STATE_FILE
    _step(net, opt)
    state.save(1, {"net": net, "opt": opt}, {"history": [0.5]}, generator=gen)
    expected = (torch.randn(2), torch.randint(0, 100, (3,), generator=gen))
    _step(net, opt)  # moves on, then a fresh process resumes
    other, other_opt = _net_and_opt(1)
    gen2 = torch.Generator().manual_seed(99)
    resumed = TrainState(tmp_path, budget=10, what="training").resume({"net": other, "opt": other_opt}, generator=gen2)
    assert resumed.step == 1 and resumed.record == {"history": [0.5]}
    assert torch.equal(torch.randn(2), expected[0]) and torch.equal(torch.randint(0, 100, (3,), generator=gen2),
                                                                   expected[1])
    assert other_opt.state_dict()["state"][0]["step"] == 1
    TrainState(tmp_path, budget=10, what="training").save(2, {"net": net}, generator=npgen)
    draw = npgen.integers(0, 1000, 4)
    npgen2 = np.random.default_rng(0)
    TrainState(tmp_path, budget=10, what="training").resume({"net": other}, generator=npgen2)
    assert (npgen2.integers(0, 1000, 4) == draw).all()
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left


def test_a_state_resumes_only_under_its_budget_unless_the_loop_can_extend_it(tmp_path):
    from layergw.torchkit.checkpoint import TrainState

    net, opt = _net_and_opt(0)
    TrainState(tmp_path, budget=[5, 5], what="fine-tuning", unit="epochs").save(3, {"net": net})
    with pytest.raises(ValueError, match=r"holds the state of a fine-tuning of \[5, 5\] epochs, not \[5, 6\]: delete"):
        TrainState(tmp_path, budget=[5, 5 + 1], what="fine-tuning", unit="epochs").resume({"net": net})
    TrainState(tmp_path, budget=5, what="training").save(3, {"net": net})
    assert TrainState(tmp_path, budget=8, what="training", extendable=True).resume({"net": net}).step == 3
    with pytest.raises(ValueError, match="of 5 steps, not 2"):  # a cap below the step reached
        TrainState(tmp_path, budget=2, what="training", extendable=True).resume({"net": net})
    with pytest.raises(ValueError, match=r"may not use the keys \['step'\]"):
        TrainState(tmp_path, budget=5, what="training").save(4, {"net": net}, {"step": 1})
    state = TrainState(tmp_path, budget=5, what="training")
    state.clear()
    assert state.peek() is None and TrainState(None, budget=5, what="x").resume({"net": net}) is None


def test_in_progress_names_are_the_hidden_temporaries_of_every_write(tmp_path):
    from layergw.torchkit.checkpoint import atomic_write, in_progress

    seen = []
    atomic_write(tmp_path / "a.bin", lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"x")))
    assert in_progress(seen[0]) and not in_progress("a.bin") and (tmp_path / "a.bin").read_bytes() == b"x"

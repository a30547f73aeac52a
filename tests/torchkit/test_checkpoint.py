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

"""FolderSync: a task's working folder mirrored to the store while it runs."""
from __future__ import annotations

import os

import pytest

from layergw.store import ResultStore
from workflows.sync import FolderSync, sync_seconds


class Recording(ResultStore):
    """A local store that remembers the order of its writes."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.written: list[str] = []

    def write_bytes(self, path: str, data: bytes) -> None:
        self.written.append(path)
        super().write_bytes(path, data)


def test_changed_files_are_copied_once_checkpoints_marked_complete_last_and_hidden_saves_skipped(tmp_path) -> None:
    store, work = Recording(str(tmp_path / "store")), tmp_path / "work"
    (work / "step-1").mkdir(parents=True)
    (work / "step-1" / "metrics.json").write_text("{}")
    (work / "step-1" / "model.safetensors").write_bytes(b"w1")
    (work / "state.pt").write_bytes(b"s1")
    (work / ".state.pt.123.tmp").write_bytes(b"half")
    sync = FolderSync(store, work, "job/seed-0", seconds=3600)
    assert sync.once() == 3
    assert store.written[-1] == "job/seed-0/step-1/metrics.json"  # the marker after the weights
    assert not store.exists("job/seed-0/.state.pt.123.tmp")
    assert sync.once() == 0  # nothing changed
    (work / "state.pt").write_bytes(b"s2-longer")
    assert sync.once() == 1 and store.read_bytes("job/seed-0/state.pt") == b"s2-longer"


def test_a_new_attempt_restores_the_folder_and_a_finished_one_prunes_what_is_gone(tmp_path) -> None:
    store = ResultStore(str(tmp_path / "store"))
    store.write_bytes("job/seed-0/state.pt", b"saved")
    store.write_bytes("job/seed-0/step-1/metrics.json", b"{}")
    work = tmp_path / "work"
    work.mkdir()
    sync = FolderSync(store, work, "job/seed-0", seconds=3600)
    assert sync.restore() == 2 and (work / "state.pt").read_bytes() == b"saved"
    with sync:
        assert sync.once() == 0  # what was restored is not copied back
        (work / "state.pt").unlink()  # the recipe removes its state when it finishes
        (work / "final").mkdir()
        (work / "final" / "metrics.json").write_text("{}")
    assert sorted(store.list_files("job")) == ["job/seed-0/final/metrics.json", "job/seed-0/step-1/metrics.json"]


def test_a_failed_attempt_keeps_its_saved_state_for_the_next(tmp_path) -> None:
    store, work = ResultStore(str(tmp_path / "store")), tmp_path / "work"
    work.mkdir()
    with pytest.raises(RuntimeError), FolderSync(store, work, "job", seconds=3600):
        (work / "state.pt").write_bytes(b"s")
        raise RuntimeError("node lost")
    assert store.read_bytes("job/state.pt") == b"s"


def test_the_interval_comes_from_the_environment_or_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("LAYERGW_SYNC_S", "0.5")
    assert sync_seconds() == 0.5
    monkeypatch.setenv("LAYERGW_SYNC_S", "soon")
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("LAYERGW_SYNC_S", bad)
        with pytest.raises(ValueError, match=f"LAYERGW_SYNC_S must be a number of seconds above 0, got '{bad}'"):
            sync_seconds()
    monkeypatch.delenv("LAYERGW_SYNC_S")
    assert sync_seconds() == 60.0 and os.environ.get("LAYERGW_SYNC_S") is None


class Remote(ResultStore):
    """A local store that passes for an object store (no local path), as S3 or GCS would."""

    def local_path(self):
        return None


def test_a_working_folder_is_the_store_itself_when_local_and_a_mirrored_copy_otherwise(tmp_path) -> None:
    from workflows.sync import working_folder

    local = ResultStore(str(tmp_path / "local"))
    with working_folder(local, "ablations/m/work/cell", "ablate") as folder:
        (folder / "train-state.pt").write_bytes(b"s1")
    assert folder == tmp_path / "local" / "ablations/m/work/cell" and local.exists("ablations/m/work/cell/train-state.pt")

    remote = Remote(str(tmp_path / "remote"))
    with pytest.raises(KeyboardInterrupt):
        with working_folder(remote, "ablations/m/work/cell", "ablate") as first:
            (first / "train-state.pt").write_bytes(b"s1")
            raise KeyboardInterrupt("node lost")
    assert not first.exists() and remote.read_bytes("ablations/m/work/cell/train-state.pt") == b"s1"
    with working_folder(remote, "ablations/m/work/cell", "ablate") as second:
        assert (second / "train-state.pt").read_bytes() == b"s1"  # the next attempt starts from it
        (second / "train-state.pt").unlink()
        (second / "done").write_bytes(b"d")
    assert remote.list_files("ablations/m/work/cell") == ["ablations/m/work/cell/done"]


def test_a_scratch_working_folder_is_kept_for_a_retry_and_dropped_after_success(tmp_path) -> None:
    from workflows.sync import working_folder

    for store in (ResultStore(str(tmp_path / "local")), Remote(str(tmp_path / "remote"))):
        with pytest.raises(KeyboardInterrupt):
            with working_folder(store, "work/cell", "ablate", discard=True) as folder:
                (folder / "train-state.pt").write_bytes(b"s1")
                raise KeyboardInterrupt("node lost")
        assert store.read_bytes("work/cell/train-state.pt") == b"s1"  # the retry resumes from it
        with working_folder(store, "work/cell", "ablate", discard=True) as folder:
            assert (folder / "train-state.pt").read_bytes() == b"s1"
            (folder / "train-state.pt").write_bytes(b"s2-final")
        assert store.list_files("work") == []  # scratch: deleted, not copied a last time

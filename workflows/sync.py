"""Mirror a task's local working folder to the result store while the task runs, so a task
whose node is lost resumes from its last saved state on another node even when the store is
an object store (a local store is worked in place and needs none of this)."""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from layergw.families import METRICS_FILE
from layergw.torchkit.checkpoint import in_progress

log = logging.getLogger(__name__)

#: seconds between passes; ``LAYERGW_SYNC_S`` overrides (the node-loss tests use a short one)
SYNC_S = 60.0


def sync_seconds() -> float:
    value = os.environ.get("LAYERGW_SYNC_S")
    if not value:
        return SYNC_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(f"LAYERGW_SYNC_S must be a number of seconds above 0, got {value!r}")
    return seconds


def _files(folder: Path) -> list[Path]:
    """The files under ``folder`` outside hidden files and folders (saves in progress); a
    folder renamed or removed during the walk is passed over."""
    out = []
    for root, dirs, names in os.walk(folder, onerror=lambda _e: None):
        dirs[:] = [d for d in dirs if not in_progress(d)]
        out += [Path(root) / n for n in names if not in_progress(n)]
    return out


class FolderSync:
    """``with FolderSync(store, local, prefix):`` copies to ``prefix`` every file of ``local``
    that changed since the last pass, every ``seconds`` and once more on leaving, when files
    that are gone locally are also removed from the store. Hidden files (a save in progress)
    are skipped, ``metrics.json`` files go last in a pass (they mark a checkpoint complete),
    and a file that changes while it is read waits for the next pass."""

    def __init__(self, store, local: Path, prefix: str, seconds: float | None = None, keep: bool = True) -> None:
        self.store, self.local, self.prefix, self.keep = store, Path(local), prefix, keep
        self.seconds = sync_seconds() if seconds is None else seconds
        self._seen: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="layergw-sync", daemon=True)

    def restore(self) -> int:
        """Copy what an earlier attempt left under ``prefix`` into the local folder; the files."""
        paths = self.store.list_files(self.prefix)
        if paths:
            self.store.download_dir(self.prefix, self.local)
            log.info("restored %d files of an earlier attempt from %s", len(paths), self.store.url(self.prefix))
        for p in self.local.rglob("*"):
            if p.is_file():
                st = p.stat()
                self._seen[p.relative_to(self.local).as_posix()] = (st.st_mtime_ns, st.st_size)
        return len(paths)

    def once(self, *, prune: bool = False) -> int:
        """One pass; the number of files copied."""
        files = _files(self.local)
        files.sort(key=lambda p: (p.name == METRICS_FILE, str(p)))
        copied = 0
        for p in files:
            rel = p.relative_to(self.local).as_posix()
            try:
                before = p.stat()
                key = (before.st_mtime_ns, before.st_size)
                if self._seen.get(rel) == key:
                    continue
                data = p.read_bytes()
                after = p.stat()
            except FileNotFoundError:
                continue
            if (after.st_mtime_ns, after.st_size) != key:
                continue
            self.store.write_bytes(f"{self.prefix}/{rel}", data)
            self._seen[rel] = key
            copied += 1
        if prune:
            here = {p.relative_to(self.local).as_posix() for p in files}
            base = self.prefix.strip("/")
            for rel in self.store.list_files(self.prefix):
                if rel[len(base):].lstrip("/") not in here:
                    self.store.delete(rel)
        return copied

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.once()
            except Exception as e:  # noqa: BLE001 - a failed pass is retried at the next one
                log.warning("could not copy %s to %s (next try in %.0f s): %s", self.local,
                            self.store.url(self.prefix), self.seconds, e)

    def __enter__(self) -> FolderSync:
        self._thread.start()
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            if self.keep:
                self.once(prune=True)
            return
        try:
            self.once()  # keep what a failed attempt saved, for the next one
        except Exception as e:  # noqa: BLE001 - the task's own error is the one to raise
            log.warning("could not copy what %s saved to %s: %s", self.local, self.store.url(self.prefix), e)


@contextmanager
def working_folder(store, prefix: str, what: str, *, discard: bool = False) -> Iterator[Path]:
    """A local folder for a task's resumable work at ``prefix`` of ``store``: the store's own
    folder, in place, when it is local; otherwise a temporary folder that starts with what an
    earlier attempt left there and is mirrored back as the task runs (:class:`FolderSync`).
    ``what`` names the task in the temporary folder's name. ``discard``: the folder is scratch
    (an ablation cell's saved state): when the block succeeds it is deleted from the store
    rather than copied there a last time, so write the task's results inside the block."""
    local = store.local_path()
    if local is not None:
        folder = local / prefix
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    else:
        with tempfile.TemporaryDirectory(prefix=f"layergw-{what}-") as tmp:
            sync = FolderSync(store, Path(tmp), prefix, keep=not discard)
            sync.restore()
            with sync:
                yield Path(tmp)
    if discard:
        remove_quietly(store, prefix)


def remove_quietly(store, prefix: str) -> None:
    """Delete a working folder whose results are stored; a failure is only logged (nothing
    finished depends on it, and a later clean-up tries again)."""
    try:
        store.delete(prefix)
    except Exception as e:  # noqa: BLE001 - the results are written; the folder is only clutter
        log.warning("could not remove the working folder %s: %s", store.url(prefix), e)

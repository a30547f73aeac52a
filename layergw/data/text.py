"""Text datasets for probes and fine-tuning: local files, the offline SST-2/Yelp copies, or the hub.

``load_text`` accepts three kinds of source:

* the shortcuts ``sst2`` and ``yelp``: the local copies under :func:`data_dir` when the
  split's files are there, else the hub datasets (``glue``/``sst2``, ``yelp_polarity``);
* a path to a ``.csv``, ``.tsv``, ``.parquet``, ``.jsonl`` or ``.txt`` file;
* anything else names a hub dataset (``name`` or ``name/config``) for ``datasets.load_dataset``.

Hub access is checked first with a short timeout, so an offline machine gets a clear
:class:`TextSourceError` at once instead of minutes of network retries.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHORTCUTS = ("sst2", "yelp")
FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".txt")
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
REPO_ROOT = Path(__file__).resolve().parents[2]

# shortcut -> split -> canonical split; the local copies use "dev" where the hub says "validation"
_SST2_LOCAL = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}
_SST2_HUB = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}
_YELP_LOCAL = {"dev": "dev", "validation": "dev", "test": "test"}
_YELP_HUB = {"train": "train", "test": "test"}
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


class TextSourceError(ValueError):
    """A text source that cannot be read: missing file, bad columns, unreachable hub dataset."""


@dataclass(frozen=True, eq=False)
class TextData:
    """Texts with optional integer labels (int64, 0..k-1), and where they came from.

    ``label_names`` is set when the labels were strings (sorted, code i = ``label_names[i]``)
    or the hub dataset declares class names.
    """

    texts: tuple[str, ...]
    labels: np.ndarray | None
    source: str
    split: str | None
    label_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def n_classes(self) -> int:
        """Number of classes (0 without labels): the declared names, else max label + 1."""
        if self.labels is None:
            return 0
        top = int(self.labels.max()) + 1 if len(self.labels) else 0
        return max(top, len(self.label_names or ()))


def data_dir() -> Path:
    """The offline data folder: ``$LAYERGW_DATA_DIR``, else ``<repo root>/../shared/data``."""
    env = os.environ.get("LAYERGW_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


def hub_offline_env() -> bool:
    """Whether the user put the Hugging Face libraries in offline (cache-only) mode."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``$HF_ENDPOINT``) answers within ``timeout`` seconds.

    Any HTTP answer counts; DNS failures, refused or timed-out connections do not. Cached
    per endpoint and process so an offline machine pays the timeout at most once.
    """
    return _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"), timeout)


@functools.cache
def _reachable(endpoint: str, timeout: float) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError) as e:  # URLError, timeouts, SSL errors, a malformed endpoint
        log.info("Hugging Face hub at %s unreachable: %s", endpoint, e)
        return False
    return True


def local_files_hint() -> str:
    return ("use local files instead: a path to a .csv/.tsv/.parquet/.jsonl file (text and label "
            "columns) or a .txt file (one text per line), or the shortcuts 'sst2' / 'yelp' with "
            f"LAYERGW_DATA_DIR pointing at the offline copies (now {data_dir()})")


def load_text(source: str, *, split: str | None = None, text_column: str = "text",
              label_column: str | None = "label", max_rows: int | None = None, seed: int = 0) -> TextData:
    """Load texts (and labels) from a shortcut, a local file or a hub dataset.

    ``text_column``/``label_column`` name the columns of files and hub datasets (the
    shortcuts know their own); ``label_column=None`` reads no labels. ``split`` selects the
    split of shortcuts and hub datasets (default: ``dev`` for the shortcuts; for a hub
    dataset its validation, else test, else train split) and is recorded for files.
    ``max_rows`` keeps a seeded subsample (``numpy.random.default_rng(seed)``) of that
    many rows, stratified by label when there are labels, in the original row order.
    """
    if not isinstance(source, str) or not source:
        raise TextSourceError(f"source must be a non-empty string, got {source!r}")
    key = source.strip().lower()
    if key in SHORTCUTS:
        data = _load_shortcut(key, split)
    elif _looks_like_path(source):
        data = _load_file(Path(source).expanduser(), text_column, label_column, split)
    else:
        data = _load_hub(source, split, text_column, label_column)
    if max_rows is not None:
        data = subsample(data, max_rows, seed)
    log.info("loaded %d texts from %s (split %s)%s", len(data), data.source, data.split,
             "" if data.labels is None else f", {data.n_classes()} classes")
    return data


def text_from_params(args: Any, where: str = "data") -> TextData:
    """:func:`load_text` from a config mapping (``{source: sst2, split: dev, max_rows: 500}``);
    a non-mapping, a missing ``source`` or an unknown key is a TextSourceError naming ``where``."""
    import inspect

    valid = list(inspect.signature(load_text).parameters)
    unknown = sorted(set(args) - set(valid)) if isinstance(args, dict) else []
    if unknown:
        raise TextSourceError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    if not isinstance(args, dict) or "source" not in args:
        raise TextSourceError(f"{where} must be a mapping with at least 'source' (sst2, yelp, a file path or a hub "
                              f"dataset name; keys: {', '.join(valid)}), e.g. {{source: sst2, split: train, "
                              f"max_rows: 4000}}; got {args!r}")
    return load_text(**args)


def subsample(data: TextData, max_rows: int, seed: int = 0) -> TextData:
    """A deterministic subsample of ``max_rows`` rows, stratified by label when labelled.

    Each class keeps its share of ``max_rows`` (largest remainders get the leftover rows);
    rows are drawn per class with ``default_rng(seed)`` and returned in their original order.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows <= 0:
        raise TextSourceError(f"max_rows must be a positive integer, got {max_rows!r}")
    n = len(data)
    if max_rows >= n:
        return data
    rng = np.random.default_rng(seed)
    if data.labels is None:
        keep = rng.choice(n, size=max_rows, replace=False)
    else:
        classes, counts = np.unique(data.labels, return_counts=True)
        quota = max_rows * counts / n
        take = np.floor(quota).astype(np.int64)
        order = np.argsort(-(quota - take), kind="stable")
        take[order[: max_rows - int(take.sum())]] += 1
        keep = np.concatenate([rng.choice(np.flatnonzero(data.labels == c), size=int(k), replace=False)
                               for c, k in zip(classes, take)])
    keep = np.sort(keep)
    return TextData(tuple(data.texts[i] for i in keep), None if data.labels is None else data.labels[keep],
                    data.source, data.split, data.label_names)


# ---------------------------------------------------------------------------------- shortcuts

def _load_shortcut(name: str, split: str | None) -> TextData:
    split = (split or "dev").strip().lower()
    root = data_dir()
    local, hub = (_SST2_LOCAL, _SST2_HUB) if name == "sst2" else (_YELP_LOCAL, _YELP_HUB)
    if split not in local and split not in hub:
        raise TextSourceError(f"{name}: unknown split {split!r}; valid: {', '.join(sorted(set(local) | set(hub)))}")
    if split in local:
        canon = local[split]
        if name == "sst2":
            path = root / "sst2" / f"{canon}.tsv"
            if path.exists():
                data = _read_table(path, "text", "label", canon)
                return TextData(data.texts, data.labels, "sst2", canon, data.label_names)
        else:
            paths = [root / "yelp" / f"sentiment.{canon}.{k}" for k in (0, 1)]
            if all(p.exists() for p in paths):
                return _read_yelp(paths, canon)
    if split not in hub:
        raise TextSourceError(f"{name}: split {split!r} exists only in the offline copy, which is not under "
                              f"{root} (set LAYERGW_DATA_DIR); the hub dataset has splits {', '.join(sorted(set(hub.values())))}")
    log.info("%s/%s: no local copy under %s, trying the hub", name, split, root)
    if name == "sst2":
        data = _load_hub("glue/sst2", hub[split], "sentence", "label")
    else:
        data = _load_hub("yelp_polarity", hub[split], "text", "label")
    return TextData(data.texts, data.labels, name, split if split != "validation" else "dev", data.label_names)


def _read_yelp(paths: Sequence[Path], split: str) -> TextData:
    texts: list[str] = []
    labels: list[int] = []
    for path in paths:
        label = int(path.name.rsplit(".", 1)[1])
        lines = _read_lines(path)
        texts.extend(lines)
        labels.extend([label] * len(lines))
    return TextData(tuple(texts), np.asarray(labels, dtype=np.int64), "yelp", split)


# ---------------------------------------------------------------------------------- files

def _looks_like_path(source: str) -> bool:
    p = Path(source).expanduser()
    return (p.exists() or p.suffix.lower() in FILE_SUFFIXES or source.startswith(("/", ".", "~"))
            or "\\" in source)


def _load_file(path: Path, text_column: str, label_column: str | None, split: str | None) -> TextData:
    suffix = path.suffix.lower()
    if not path.exists():
        raise TextSourceError(f"text file {str(path)!r} not found")
    if path.is_dir() or suffix not in FILE_SUFFIXES:
        raise TextSourceError(f"text source {str(path)!r}: expected a file ending in {', '.join(FILE_SUFFIXES)}")
    if suffix == ".txt":
        return TextData(tuple(_read_lines(path)), None, str(path), split)
    return _read_table(path, text_column, label_column, split)


def _read_lines(path: Path) -> list[str]:
    """One text per line; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def _read_columns(path: Path) -> dict[str, list[Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise TextSourceError(f"{path}: line {lineno} is not JSON: {e}") from e
        names = list(dict.fromkeys(k for r in rows for k in r))
        return {k: [r.get(k) for r in rows] for k in names}
    # TSV follows the GLUE convention: no quoting, so quotes inside texts stay as they are
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, **kwargs)
        header = next(reader, None)
        if header is None:
            raise TextSourceError(f"{path} is empty (expected a header row)")
        cols: dict[str, list[Any]] = {h: [] for h in header}
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise TextSourceError(f"{path}: line {lineno} has {len(row)} fields, the header has {len(header)}")
            for h, v in zip(header, row):
                cols[h].append(v)
    return cols


def _read_table(path: Path, text_column: str, label_column: str | None, split: str | None) -> TextData:
    cols = _read_columns(path)
    missing = [c for c in (text_column, label_column) if c is not None and c not in cols]
    if missing:
        raise TextSourceError(
            f"{path}: no column {' or '.join(repr(c) for c in missing)}; columns present: "
            f"{', '.join(repr(c) for c in cols) or '(none)'} (set text_column / label_column, "
            "or label_column=None for unlabelled data)")
    texts, raw = cols[text_column], (cols[label_column] if label_column is not None else None)
    if raw is not None and _all_ints(texts) and not _all_ints(raw):
        # e.g. SST-2's test.tsv: the header says text<TAB>label but the rows are <int><TAB><sentence>
        log.warning("%s: column %r holds integers and %r holds text; the header is swapped, reading "
                    "them the other way round", path, text_column, label_column)
        texts, raw = raw, texts
        ints = np.asarray([int(v) for v in raw], dtype=np.int64)
        if len(ints) > 2 and np.array_equal(ints, np.arange(len(ints))):
            log.warning("%s: the integer column is the row index 0..%d, not class labels; reading no labels",
                        path, len(ints) - 1)
            raw = None
    labels, names = _parse_labels(raw, f"{path}, column {label_column!r}") if raw is not None else (None, None)
    return TextData(tuple("" if t is None else str(t) for t in texts), labels, str(path), split, names)


def _all_ints(values: Sequence[Any]) -> bool:
    return len(values) > 0 and all(
        (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or (isinstance(v, str) and _INT_RE.match(v))
        for v in values)


def _parse_labels(values: Sequence[Any], where: str) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Integer labels (ints, integer strings, integral floats) or string categories -> int64 codes.

    All-negative integer labels (GLUE's -1 for an unlabelled test split) mean no labels.
    """
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
        raise TextSourceError(f"{where}: some labels are missing")
    if all(isinstance(v, (int, np.integer, float, np.floating)) and not isinstance(v, bool) for v in values) \
            or _all_ints(values):
        arr = np.asarray([float(v) for v in values])
        if not np.all(arr == np.round(arr)):
            raise TextSourceError(f"{where}: labels must be integer classes, got non-integral values")
        labels = arr.astype(np.int64)
        if len(labels) and labels.max() < 0:
            log.warning("%s: every label is negative (an unlabelled split); reading no labels", where)
            return None, None
        if len(labels) and labels.min() < 0:
            raise TextSourceError(f"{where}: labels must be 0..k-1, found {int(labels.min())}")
        return labels, None
    names = tuple(sorted({str(v) for v in values}))
    code = {n: i for i, n in enumerate(names)}
    log.info("%s: string labels %s coded as 0..%d", where, names, len(names) - 1)
    return np.asarray([code[str(v)] for v in values], dtype=np.int64), names


# ---------------------------------------------------------------------------------- hub

def _hub_candidates(name: str) -> list[tuple[str, str | None]]:
    """(path, config) readings of a hub name: ``name``, ``name/config`` (else repository
    ``org/name``), ``org/name/config``."""
    parts = name.split("/")
    if len(parts) == 2:
        return [(parts[0], parts[1]), (name, None)]
    if len(parts) == 3:
        return [("/".join(parts[:2]), parts[2])]
    return [(name, None)]


def _load_hub(name: str, split: str | None, text_column: str, label_column: str | None) -> TextData:
    hint = local_files_hint()
    if not hub_offline_env() and not hub_reachable():
        raise TextSourceError(
            f"hub dataset {name!r} cannot be loaded: the Hugging Face hub is unreachable from this machine "
            f"(if the dataset is in your Hugging Face cache, set HF_HUB_OFFLINE=1); {hint}")
    import datasets

    ds, errors = None, []
    for path, config in _hub_candidates(name):
        try:
            ds = datasets.load_dataset(path, config, split=split)
            break
        except Exception as e:  # noqa: BLE001 - every loader failure becomes one clear error
            errors.append(f"load_dataset({path!r}, {config!r}): {type(e).__name__}: {e}")
    if ds is None:
        raise TextSourceError(f"hub dataset {name!r} (split {split!r}) could not be loaded ({'; '.join(errors)}); {hint}")
    if isinstance(ds, datasets.DatasetDict):
        split = next((s for s in ("validation", "test", "train") if s in ds), next(iter(ds)))
        log.info("hub dataset %s: no split given, using %r of %s", name, split, list(ds))
        ds = ds[split]
    missing = [c for c in (text_column, label_column) if c is not None and c not in ds.column_names]
    if missing:
        raise TextSourceError(f"hub dataset {name!r}: no column {' or '.join(repr(c) for c in missing)}; "
                              f"columns present: {', '.join(repr(c) for c in ds.column_names)}")
    labels, names = (None, None)
    if label_column is not None:
        labels, names = _parse_labels(list(ds[label_column]), f"hub dataset {name!r}, column {label_column!r}")
        feature = ds.features.get(label_column)
        if labels is not None and names is None and getattr(feature, "names", None):
            names = tuple(feature.names)
    return TextData(tuple(str(t) for t in ds[text_column]), labels, name, split, names)


__all__ = ["TextData", "TextSourceError", "data_dir", "hub_offline_env", "hub_reachable", "load_text", "subsample",
           "text_from_params"]

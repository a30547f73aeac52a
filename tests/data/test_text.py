"""Text datasets: local formats, the SST-2/Yelp offline layouts, subsampling, clear errors."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from layergw.data.text import TextData, TextSourceError, data_dir, load_text, subsample

SENTENCES = ["a fine film .", "dull , flat , lifeless", 'he said "wow" , twice', "comma, inside", "ok"]
LABELS = [1, 0, 1, 0, 1]


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the hub at a closed local port so hub access fails at once on any machine."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)


def write_tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ local formats

def test_csv_reads_quoted_fields_and_int_labels(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "d.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(SENTENCES, LABELS))
    d = load_text(str(path))
    assert d.texts == tuple(SENTENCES)
    assert d.labels.dtype == np.int64 and d.labels.tolist() == LABELS
    assert len(d) == 5 and d.source == str(path)


def test_tsv_keeps_quotes_inside_texts(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv", ["text", "label"], [[s, y] for s, y in zip(SENTENCES, LABELS)])
    d = load_text(str(path), split="mine")
    assert d.texts == tuple(SENTENCES) and d.labels.tolist() == LABELS and d.split == "mine"


def test_parquet_with_custom_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": SENTENCES, "y": LABELS, "other": list(range(5))}), path)
    d = load_text(str(path), text_column="sentence", label_column="y")
    assert d.texts == tuple(SENTENCES) and d.labels.tolist() == LABELS


def test_jsonl_with_string_labels_coded_in_sorted_order(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    names = ["pos" if y else "neg" for y in LABELS]
    path.write_text("\n".join(json.dumps({"text": s, "label": n}) for s, n in zip(SENTENCES, names)) + "\n\n")
    d = load_text(str(path))
    assert d.label_names == ("neg", "pos")
    assert [d.label_names[c] for c in d.labels] == names
    assert d.n_classes() == 2


def test_txt_is_one_text_per_line_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("first line\n\nsecond line\r\nthird\n", encoding="utf-8")
    d = load_text(str(path))
    assert d.texts == ("first line", "second line", "third") and d.labels is None and d.n_classes() == 0


def test_label_column_none_reads_no_labels(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv", ["text"], [[s] for s in SENTENCES])
    d = load_text(str(path), label_column=None)
    assert d.labels is None and len(d) == 5


def test_negative_labels_everywhere_mean_unlabelled(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv", ["text", "label"], [[s, -1] for s in SENTENCES])
    assert load_text(str(path)).labels is None


# ------------------------------------------------------------------ the SST-2 test.tsv quirk

def test_swapped_header_reads_label_then_text(tmp_path: Path) -> None:
    """Header ``text<TAB>label`` over rows ``<label><TAB><text>``: texts and labels still come out right."""
    path = write_tsv(tmp_path / "test.tsv", ["text", "label"], [[y, s] for s, y in zip(SENTENCES, LABELS)])
    d = load_text(str(path))
    assert d.texts == tuple(SENTENCES) and d.labels.tolist() == LABELS


def test_swapped_header_with_row_index_gives_no_labels(tmp_path: Path) -> None:
    """An integer column that is just 0..n-1 is a row index, not labels."""
    path = write_tsv(tmp_path / "test.tsv", ["text", "label"], [[i, s] for i, s in enumerate(SENTENCES)])
    d = load_text(str(path))
    assert d.texts == tuple(SENTENCES) and d.labels is None


def sst2_dir() -> Path:
    return data_dir() / "sst2"


@pytest.mark.skipif(not (sst2_dir() / "test.tsv").exists(), reason="offline SST-2 copy not present (LAYERGW_DATA_DIR)")
def test_real_sst2_test_file_yields_sentences() -> None:
    raw = (sst2_dir() / "test.tsv").read_text(encoding="utf-8").splitlines()
    d = load_text("sst2", split="test")
    assert len(d) == len(raw) - 1
    assert d.texts[0] == raw[1].split("\t", 1)[1]  # the sentence, not the leading integer
    assert not any(t.strip().isdigit() for t in d.texts)
    # the file's integer column is 0..n-1 (GLUE's unlabelled test index), so no labels
    assert d.labels is None


@pytest.mark.skipif(not (sst2_dir() / "dev.tsv").exists(), reason="offline SST-2 copy not present (LAYERGW_DATA_DIR)")
def test_real_sst2_dev_matches_file_and_validation_alias() -> None:
    rows = [r.rsplit("\t", 1) for r in (sst2_dir() / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    d = load_text("sst2", split="dev")
    assert d.texts == tuple(r[0] for r in rows) and d.labels.tolist() == [int(r[1]) for r in rows]
    v = load_text("sst2", split="validation")
    assert v.texts == d.texts and v.split == "dev" and d.source == "sst2"


def test_sst2_shortcut_reads_local_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sst2").mkdir()
    write_tsv(tmp_path / "sst2" / "train.tsv", ["text", "label"], [[s, y] for s, y in zip(SENTENCES, LABELS)])
    write_tsv(tmp_path / "sst2" / "dev.tsv", ["text", "label"], [[s, y] for s, y in zip(SENTENCES[:2], LABELS[:2])])
    monkeypatch.setenv("LAYERGW_DATA_DIR", str(tmp_path))
    assert load_text("sst2", split="train").texts == tuple(SENTENCES)
    d = load_text("SST2")  # default split: dev
    assert d.texts == tuple(SENTENCES[:2]) and d.split == "dev"


# ------------------------------------------------------------------ yelp

def test_yelp_layout_labels_from_file_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    y = tmp_path / "yelp"
    y.mkdir()
    (y / "sentiment.dev.0").write_text("bad food .\nrude staff .\n")
    (y / "sentiment.dev.1").write_text("great place .\n\nlovely !\nyum .\n")
    (y / "sentiment.test.0").write_text("meh .\n")
    (y / "sentiment.test.1").write_text("wow .\n")
    monkeypatch.setenv("LAYERGW_DATA_DIR", str(tmp_path))
    d = load_text("yelp", split="dev")
    assert d.texts == ("bad food .", "rude staff .", "great place .", "lovely !", "yum .")
    assert d.labels.tolist() == [0, 0, 1, 1, 1] and d.source == "yelp" and d.split == "dev"
    assert load_text("yelp", split="validation").texts == d.texts
    t = load_text("yelp", split="test")
    assert t.texts == ("meh .", "wow .") and t.labels.tolist() == [0, 1]


# ------------------------------------------------------------------ subsampling

def labelled(n0: int, n1: int, n2: int) -> TextData:
    labels = np.array([0] * n0 + [1] * n1 + [2] * n2, dtype=np.int64)
    rng = np.random.default_rng(123)
    labels = labels[rng.permutation(len(labels))]
    return TextData(tuple(f"t{i}" for i in range(len(labels))), labels, "mem", None)


def test_subsample_is_deterministic_and_seeded() -> None:
    data = labelled(300, 200, 100)
    a, b = subsample(data, 60, seed=7), subsample(data, 60, seed=7)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert subsample(data, 60, seed=8).texts != a.texts


def test_subsample_is_stratified_ordered_subset() -> None:
    data = labelled(300, 200, 100)
    s = subsample(data, 60, seed=0)
    assert len(s) == 60
    assert np.bincount(s.labels).tolist() == [30, 20, 10]  # each class keeps its share
    pos = [data.texts.index(t) for t in s.texts]
    assert pos == sorted(pos)  # original order, real rows
    assert all(data.labels[p] == y for p, y in zip(pos, s.labels))


def test_subsample_rounding_keeps_total_and_small_classes() -> None:
    data = labelled(97, 2, 1)
    s = subsample(data, 10, seed=1)
    assert len(s) == 10 and set(s.labels.tolist()) <= {0, 1, 2}
    assert np.bincount(s.labels, minlength=3)[0] >= 9


def test_subsample_without_labels_and_via_load_text(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("\n".join(f"line {i}" for i in range(50)))
    a = load_text(str(path), max_rows=10, seed=3)
    rng_pick = np.sort(np.random.default_rng(3).choice(50, size=10, replace=False))
    assert a.texts == tuple(f"line {i}" for i in rng_pick)
    assert len(load_text(str(path), max_rows=500)) == 50


def test_subsample_rejects_nonpositive_max_rows() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        subsample(labelled(5, 5, 5), 0)


# ------------------------------------------------------------------ errors

def test_missing_columns_error_lists_present_columns(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv", ["sentence", "y"], [["x", 1]])
    with pytest.raises(ValueError, match=r"no column 'text' or 'label'.*'sentence', 'y'"):
        load_text(str(path))
    with pytest.raises(ValueError, match=r"no column 'label'.*label_column=None"):
        load_text(str(path), text_column="sentence")


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_text(str(tmp_path / "nope.csv"))
    other = tmp_path / "d.xlsx"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"\.csv"):
        load_text(str(other))


def test_unknown_shortcut_split() -> None:
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_text("sst2", split="holdout")


def test_hub_dataset_fails_fast_with_local_hint(offline_hub: None) -> None:
    t0 = time.perf_counter()
    with pytest.raises(TextSourceError) as e:
        load_text("someone/no-such-dataset")
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "someone/no-such-dataset" in msg and "LAYERGW_DATA_DIR" in msg and ".csv" in msg and "sst2" in msg


def test_shortcut_without_local_copy_falls_back_to_hub_and_fails_fast(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_hub: None) -> None:
    monkeypatch.setenv("LAYERGW_DATA_DIR", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="glue/sst2.*LAYERGW_DATA_DIR"):
        load_text("sst2", split="dev")
    with pytest.raises(ValueError, match="yelp_polarity"):
        load_text("yelp", split="train")
    assert time.perf_counter() - t0 < 5

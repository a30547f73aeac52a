"""The family tests need some labelled texts, not SST-2 itself: where the offline copy is not
beside the checkout (``../shared/data``, or ``$LAYERGW_DATA_DIR``), the ``sst2`` shortcut reads
a small generated stand-in for the test session."""
from __future__ import annotations

import pytest

WORDS = {1: ["good", "warm", "charming", "bright", "moving", "funny"],
         0: ["bad", "dull", "bleak", "tired", "flat", "empty"]}


@pytest.fixture(scope="session", autouse=True)
def _texts_where_sst2_is_missing(tmp_path_factory: pytest.TempPathFactory) -> None:
    from layergw.data.text import data_dir

    if (data_dir() / "sst2" / "dev.tsv").exists():
        yield
        return
    root = tmp_path_factory.mktemp("stand-in-data")
    (root / "sst2").mkdir()
    for split, n in (("train", 96), ("dev", 48), ("test", 48)):
        rows = [f"the film is {WORDS[i % 2][i % 6]} and {WORDS[i % 2][(i // 2) % 6]} .\t{i % 2}" for i in range(n)]
        (root / "sst2" / f"{split}.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAYERGW_DATA_DIR", str(root))
    yield
    mp.undo()

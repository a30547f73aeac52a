"""The Parquet schemas: rows must carry every column except the ones added later."""
from __future__ import annotations

import pytest

from layergw.results import OPTIONAL, PAIRS, table


def _row() -> dict:
    return {f.name: None for f in PAIRS if f.name not in OPTIONAL}


def test_optional_columns_may_be_missing_and_become_null():
    t = table([_row()], PAIRS)
    assert t.schema == PAIRS
    assert t.column("spread").to_pylist() == [None]


def test_a_missing_required_column_is_an_error_naming_it():
    row = _row()
    del row["value"]
    with pytest.raises(ValueError, match=r"rows lack columns \['value'\]"):
        table([row], PAIRS)

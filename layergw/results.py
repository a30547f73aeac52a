"""The Parquet schemas of a run's results, and the layout of a run folder.

Run folder (relative to the run root):
    config.json                      resolved study config
    run.json                         status, timings, code version
    points.parquet                   every model's representation points (POINTS)
    reps/<model>/<index>.npy         extracted representations, float32 (n, d)
    pairs/<model>/<measure key>/tile-<i0>-<j0>.parquet   one file per finished tile (PAIRS)
    targets.parquet                  target vs layer values (TARGETS)
    groups.parquet                   layer groups (GROUPS)
    report/index.html, report/*.png

A measure *variant* is (``measure``, ``params``): ``params`` is the JSON of the measure
object's full ``params()`` with sorted keys (``json.dumps(m.params(), sort_keys=True)``),
the same string in PAIRS, TARGETS and GROUPS rows, so two variants of one measure (say
``gw`` and ``gw`` with ``normalize=max``) stay apart. TARGETS and GROUPS tables written
before they had ``params`` lack it; readers (the report) take a missing or null ``params``
to mean "the only variant of that measure".
"""
from __future__ import annotations

import pyarrow as pa

PAIRS = pa.schema([
    ("study", pa.string()),
    ("run_id", pa.string()),
    ("model_a", pa.string()),
    ("seed_a", pa.int64()),
    ("checkpoint_a", pa.string()),
    ("layer_a", pa.string()),
    ("layer_a_index", pa.int64()),
    ("model_b", pa.string()),
    ("seed_b", pa.int64()),
    ("checkpoint_b", pa.string()),
    ("layer_b", pa.string()),
    ("layer_b_index", pa.int64()),
    ("measure", pa.string()),
    ("params", pa.string()),
    ("kind", pa.string()),
    ("value", pa.float64()),
    ("n_samples", pa.int64()),
    ("iterations", pa.int64()),
    ("converged", pa.bool_()),
    ("seconds", pa.float64()),
    ("error", pa.string()),
    ("config_hash", pa.string()),
    ("code_version", pa.string()),
    ("spread", pa.float64()),
])

POINTS = pa.schema([
    ("model", pa.string()),
    ("layer", pa.string()),
    ("layer_index", pa.int64()),
    ("display", pa.string()),
    ("block", pa.int64()),
    ("role", pa.string()),
    ("dim", pa.int64()),
])

TARGETS = pa.schema([
    ("model", pa.string()),
    ("target", pa.string()),
    ("layer", pa.string()),
    ("layer_index", pa.int64()),
    ("display", pa.string()),
    ("measure", pa.string()),
    ("params", pa.string()),
    ("value", pa.float64()),
    ("rank", pa.int64()),
])

GROUPS = pa.schema([
    ("model", pa.string()),
    ("measure", pa.string()),
    ("params", pa.string()),
    ("method", pa.string()),
    ("selection", pa.string()),
    ("k", pa.int64()),
    ("k_eigengap", pa.int64()),
    ("k_silhouette", pa.int64()),
    ("layer", pa.string()),
    ("layer_index", pa.int64()),
    ("display", pa.string()),
    ("group", pa.int64()),
    ("boundary", pa.bool_()),
    ("seed", pa.int64()),
])


#: Columns added after the first release: rows may lack them (null), older files do too.
OPTIONAL = frozenset({"spread"})


def table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows to a table of exactly this schema; a missing column is an error, not a null,
    except for the OPTIONAL ones."""
    missing = [f.name for f in schema if rows and f.name not in rows[0] and f.name not in OPTIONAL]
    if missing:
        raise ValueError(f"rows lack columns {missing} of the schema")
    return pa.Table.from_pylist(rows, schema=schema)

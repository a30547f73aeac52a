"""The Parquet schemas of a run's results (where each lives: :mod:`layergw.layout`).

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
    ("depth", pa.float64()),
    ("constant", pa.bool_()),
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
    ("same_classes", pa.bool_()),
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
    ("strength", pa.float64()),
])


#: Columns added after the first release: rows may lack them (null), older files do too.
OPTIONAL = frozenset({"spread", "strength", "depth", "constant", "same_classes"})


def table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows to a table of exactly this schema; a missing column is an error, not a null,
    except for the OPTIONAL ones."""
    missing = [f.name for f in schema if rows and f.name not in rows[0] and f.name not in OPTIONAL]
    if missing:
        raise ValueError(f"rows lack columns {missing} of the schema")
    return pa.Table.from_pylist(rows, schema=schema)


def from_frame(df, schema: pa.Schema) -> pa.Table:
    """A pandas DataFrame to a table of exactly this schema (NaN in an integer or boolean
    column is a null)."""
    rows = df.astype(object).where(df.notna(), None).to_dict("records") if len(df) else []
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


# The paper's diagnostics of one model (layout.diagnostics(model, table)): written by the
# diagnose stage, read by the report, which draws and never computes them.

#: intra-layer pairwise distances, each layer divided by ``scale``, in common bins
HISTOGRAMS = pa.schema([
    ("layer_index", pa.int64()), ("bin", pa.int64()), ("lo", pa.float64()), ("hi", pa.float64()),
    ("count", pa.int64()), ("scale", pa.float64()), ("normalize", pa.string()), ("epsilon", pa.float64()),
])

#: each layer against the previous one: KL between their distance histograms, and the value of
#: the GW variant named by ``measure``/``params`` (null without a gw measure)
STEPS = pa.schema([
    ("layer_index", pa.int64()), ("kl", pa.float64()), ("measure", pa.string()), ("params", pa.string()),
    ("value", pa.float64()),
])

#: mean Jaccard overlap of every sample's k nearest neighbours in two layers (a < b)
JACCARD = pa.schema([
    ("layer_a_index", pa.int64()), ("layer_b_index", pa.int64()), ("value", pa.float64()), ("k", pa.int64()),
])

#: the GW transport plan across the largest step, its non-zero entries
PLAN = pa.schema([
    ("layer_a_index", pa.int64()), ("layer_b_index", pa.int64()), ("row", pa.int64()), ("col", pa.int64()),
    ("mass", pa.float64()), ("measure", pa.string()), ("params", pa.string()),
])

#: how often each block cut of the depth segmentation recurs over bootstrap replicates of the inputs
BOOTSTRAP = pa.schema([
    ("model", pa.string()), ("measure", pa.string()), ("params", pa.string()), ("cut", pa.int64()),
    ("share", pa.float64()), ("replicates", pa.int64()), ("points", pa.int64()), ("seed", pa.int64()),
])

#: the adjusted Rand index of every pair of seeds' groupings (layergw.agreement)
SEED_AGREEMENT = pa.schema([
    ("seed_set", pa.string()), ("measure", pa.string()), ("params", pa.string()), ("method", pa.string()),
    ("model_a", pa.string()), ("model_b", pa.string()), ("seed_a", pa.int64()), ("seed_b", pa.int64()),
    ("ari", pa.float64()),
])

#: one row per seed set and grouping: agreement, each seed's k, where the boundaries lie across seeds
AGREEMENT_SUMMARY = pa.schema([
    ("seed_set", pa.string()), ("measure", pa.string()), ("params", pa.string()), ("method", pa.string()),
    ("seeds", pa.int64()), ("mean_ari", pa.float64()), ("min_ari", pa.float64()), ("k", pa.string()),
    ("modal_k", pa.int64()), ("boundary_mean", pa.string()), ("boundary_spread", pa.string()),
])

#: one row per model and grouping: k, its boundaries (layer indices, JSON) and its seed set's agreement
STUDY_SUMMARY = pa.schema([
    ("model", pa.string()), ("measure", pa.string()), ("params", pa.string()), ("method", pa.string()),
    ("k", pa.int64()), ("boundaries", pa.string()), ("seed_set", pa.string()), ("mean_ari", pa.float64()),
])

DIAGNOSTICS = {"histograms": HISTOGRAMS, "steps": STEPS, "jaccard": JACCARD, "plan": PLAN}

#: one row per ablation cell and metric: what a model keeps (``kept_blocks`` of its blocks,
#: ``keep`` as a JSON list) or freezes (blocks before ``first_trained_block``), how the kept
#: blocks were chosen (``selector``), and the fine-tuned model's metric on held-out data
ABLATIONS = pa.schema([
    ("model", pa.string()), ("ablation", pa.string()), ("kept_blocks", pa.int64()),
    ("first_trained_block", pa.int64()), ("selector", pa.string()), ("keep", pa.string()), ("seed", pa.int64()),
    ("n_blocks", pa.int64()), ("metric", pa.string()), ("value", pa.float64()), ("split", pa.string()),
    ("n_train", pa.int64()), ("epochs", pa.int64()), ("seconds", pa.float64()), ("checkpoint", pa.string()),
])


# Read from the ablation grid and the groups (interventions.ablate.ablation_tables), written by
# the ablate stage beside ablations.parquet; the report draws them and never recomputes them.

#: held-out accuracy per cell over seeds
ABLATION_SUMMARY = pa.schema([
    ("model", pa.string()), ("ablation", pa.string()), ("kept_blocks", pa.int64()),
    ("first_trained_block", pa.int64()), ("selector", pa.string()), ("n_blocks", pa.int64()),
    ("mean", pa.float64()), ("std", pa.float64()), ("count", pa.int64()),
])
#: per model: the accuracy knees and whether N = L matches the checkpoint (``full_*``)
KNEES = pa.schema([
    ("model", pa.string()), ("n_blocks", pa.int64()), ("tolerance", pa.float64()),
    ("prune_knee", pa.int64()), ("freeze_knee", pa.int64()), ("full_checkpoint", pa.float64()),
    ("full_full", pa.float64()), ("full_spread", pa.float64()), ("full_seeds", pa.int64()),
    ("full_difference", pa.float64()), ("full_goal_reached", pa.bool_()), ("full_required", pa.bool_()),
    ("full_holds", pa.bool_()),
])
#: per model and grouping: its block cuts, the prune and freeze it proposes, and the grid at the prune
PRUNE_PLAN = pa.schema([
    ("model", pa.string()), ("measure", pa.string()), ("params", pa.string()), ("method", pa.string()),
    ("cuts", pa.string()), ("n_blocks", pa.int64()), ("proposed_prune", pa.int64()),
    ("proposed_freeze", pa.int64()), ("full", pa.float64()), ("threshold", pa.float64()),
    ("measured", pa.float64()), ("spread", pa.float64()), ("holds", pa.bool_()), ("baselines", pa.string()),
])
#: per grouping: mean distance of its proposals to the knees and accuracy lost, best first
MEASURE_RANKING = pa.schema([
    ("rank", pa.int64()), ("measure", pa.string()), ("params", pa.string()), ("method", pa.string()),
    ("models", pa.int64()), ("distance", pa.float64()), ("accuracy_lost", pa.float64()),
])
ABLATION_TABLES = {"summary": ABLATION_SUMMARY, "knees": KNEES, "prune_plan": PRUNE_PLAN,
                   "measure_ranking": MEASURE_RANKING}

#: a model's mean pairwise value per checkpoint of a training series (the paper's Figures 6-7)
DYNAMICS = pa.schema([
    ("series", pa.string()), ("model", pa.string()), ("label", pa.string()), ("step", pa.int64()),
    ("accuracy", pa.float64()), ("f1", pa.float64()), ("measure", pa.string()), ("params", pa.string()),
    ("mean_value", pa.float64()), ("pairs", pa.int64()),
])

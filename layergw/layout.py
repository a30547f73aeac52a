"""The run folder's paths: every stage writes, and the report reads, through these names.

A study's folder ``<store>/<study>/`` holds trained checkpoints (``train/``, shared by its
runs) and one folder per run, ``<run id>/``:

    config.json                         the resolved config, its results hash, code version
    run.json                            stage, status, timings, failures
    layout.json                         the tile size (a run folder keeps one tiling)
    series.json                         which models came from one configured model (seeds, checkpoints)
    points.parquet                      every model's representation points (POINTS)
    reps/<model>/<k>.npy                representations, float32 (n, d), k the point's index
    reps/<model>/targets/<target>.npy   known targets, one-hot
    reps/<model>/done.json              the extraction manifest, written last
    pairs/<model>/<measure key>/tile-<i0>-<j0>.parquet     one finished tile of pair rows (PAIRS)
    cross/<a>/<b>/<measure key>/tile-<i0>-<j0>.parquet     layers of a against layers of b (PAIRS)
    targets/<model>/<measure key>/<target>.parquet         one target against every point (TARGETS)
    targets.parquet, groups.parquet     gathered targets (TARGETS), layer groups (GROUPS)
    seed_agreement.parquet, agreement_summary.parquet, study_summary.parquet
                                        how alike seeds' groups are; one row per model and grouping
    diagnostics/<model>/<table>.parquet the paper's diagnostic tables (results.DIAGNOSTICS), done.json
    skip/<model>/kl.npy, agreement.json the skip intervention's KL matrix and each measure's agreement
    bootstrap/<model>/<measure key>.parquet  boundary confidence over resampled inputs (BOOTSTRAP)
    ablations/<model>/<cell>.parquet    one pruning or freezing cell (ABLATIONS); blocks.json the selectors' statistics
    ablations/<model>/work/<name>/      a running task's saved fine-tuning state (removed when its cells are written)
    ablations.parquet                   every cell gathered
    ablation_summary.parquet, knees.parquet, prune_plan.parquet, measure_ranking.parquet
                                        read from the grid and the groups (results.ABLATION_TABLES)
    dynamics.parquet                    mean pairwise value per checkpoint of a training series
    report/index.html, report/*.png     the report, drawn from the above

A measure key is the measure's name and a hash of its full resolved parameters
(``Measure.key``), so two spellings of one variant share a folder.
Every file is written atomically by the store: a file that exists is complete.
"""
from __future__ import annotations

CONFIG = "config.json"
RUN = "run.json"
TILING = "layout.json"
SERIES = "series.json"
POINTS = "points.parquet"
TARGETS = "targets.parquet"
GROUPS = "groups.parquet"
SEED_AGREEMENT = "seed_agreement.parquet"
AGREEMENT_SUMMARY = "agreement_summary.parquet"
STUDY_SUMMARY = "study_summary.parquet"
BOOTSTRAP = "bootstrap.parquet"
ABLATIONS = "ablations.parquet"
#: tables read from the ablation grid (results.ABLATION_TABLES), each ``<name>.parquet``
ABLATION_TABLES = {"summary": "ablation_summary.parquet", "knees": "knees.parquet",
                   "prune_plan": "prune_plan.parquet", "measure_ranking": "measure_ranking.parquet"}
DYNAMICS = "dynamics.parquet"
PAIRS_DIR = "pairs"
CROSS_DIR = "cross"
TRAIN_DIR = "train"
REPORT = "report"
REPORT_PAGE = f"{REPORT}/index.html"

#: diagnostic tables per model, each a Parquet file under diagnostics/<model>/
DIAGNOSTIC_TABLES = ("histograms", "steps", "jaccard", "plan")


def reps_dir(model: str) -> str:
    return f"reps/{model}"


def rep(model: str, index: int) -> str:
    return f"reps/{model}/{index}.npy"


def rep_shard(model: str, index: int, shard: int) -> str:
    """One shard's rows of point ``index`` (sharded extraction), until they are assembled."""
    return f"reps/{model}/shards/{index}.{shard}.npy"


def shard_done(model: str, shard: int) -> str:
    """A finished extraction shard's record: present means its point files are complete."""
    return f"reps/{model}/shards/done-{shard}.json"


def target_rep(model: str, target: str) -> str:
    return f"reps/{model}/targets/{target}.npy"


def extracted(model: str) -> str:
    """The extraction manifest: present means the model's representations are complete."""
    return f"reps/{model}/done.json"


def pairs_dir(model: str, measure_key: str) -> str:
    return f"{PAIRS_DIR}/{model}/{measure_key}"


def tile(model: str, measure_key: str, i0: int, j0: int) -> str:
    return f"{pairs_dir(model, measure_key)}/tile-{i0:04d}-{j0:04d}.parquet"


def cross_dir(model_a: str, model_b: str, measure_key: str) -> str:
    return f"{CROSS_DIR}/{model_a}/{model_b}/{measure_key}"


def cross_tile(model_a: str, model_b: str, measure_key: str, i0: int, j0: int) -> str:
    return f"{cross_dir(model_a, model_b, measure_key)}/tile-{i0:04d}-{j0:04d}.parquet"


def target_table(model: str, measure_key: str, target: str) -> str:
    return f"targets/{model}/{measure_key}/{target}.parquet"


def diagnostics(model: str, table: str) -> str:
    if table not in DIAGNOSTIC_TABLES:
        raise ValueError(f"diagnostic table must be one of {DIAGNOSTIC_TABLES}, got {table!r}")
    return f"diagnostics/{model}/{table}.parquet"


def diagnosed(model: str) -> str:
    """Written last by the diagnose stage: which GW variant the steps and plan used."""
    return f"diagnostics/{model}/done.json"


def bootstrap(model: str, measure_key: str) -> str:
    """How often each block cut recurs over bootstrap replicates (BOOTSTRAP) of one model and measure."""
    return f"bootstrap/{model}/{measure_key}.parquet"


def ablation_cell(model: str, cell: str) -> str:
    """One finished ablation cell (``prune-first-n2-s0``): present means it is done."""
    return f"ablations/{model}/{cell}.parquet"


def ablation_work(model: str, name: str) -> str:
    """The working folder of a running ablation task (its fine-tuning's saved state, to resume
    from); an empty ``name``: the folder of all of a model's."""
    return f"ablations/{model}/work/{name}".rstrip("/")


def ablation_blocks(model: str) -> str:
    """The block statistics the layer-drop selectors read (Block Influence, angular distances)."""
    return f"ablations/{model}/blocks.json"


def skip_kl(model: str) -> str:
    return f"skip/{model}/kl.npy"


def skip_agreement(model: str) -> str:
    return f"skip/{model}/agreement.json"


def report_file(name: str) -> str:
    return f"{REPORT}/{name}"


# -- the study folder (the parent of the run folders) ---------------------------------------

def train_seed_dir(job_key: str, seed: int) -> str:
    """One train job's seed: ``train/<job>/<job hash>/seed-<s>/<label>/`` per checkpoint, and
    ``done.json`` written last. ``job_key`` is ``<job id>/<job hash>``."""
    return f"{TRAIN_DIR}/{job_key}/seed-{seed}"


def train_done(job_key: str, seed: int) -> str:
    return f"{train_seed_dir(job_key, seed)}/done.json"

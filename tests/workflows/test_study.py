"""The study job end to end on Ray: pair tables, groups, targets, report; reruns, added
measures, an S3 store, kill-and-resume in subprocesses, NaN representations and an
unreachable store."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# the project's virtualenv when there is one, else the interpreter running the tests
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable

#: The pair-table columns DESIGN.md promises.
DESIGN_COLUMNS = ("study, run_id, model_a, seed_a, checkpoint_a, layer_a, layer_a_index, model_b, seed_b, "
                  "checkpoint_b, layer_b, layer_b_index, measure, params, kind, value, n_samples, iterations, "
                  "converged, seconds, error, config_hash, code_version").split(", ")

PAIR_KEY = ["model_a", "measure", "layer_a_index", "layer_b_index"]


# -- helpers -----------------------------------------------------------------------------


def _run_store(cfg):
    from layergw.store import ResultStore

    return ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)


def _pairs(run):
    from layergw.results import PAIRS

    t = run.read_tables("pairs", PAIRS)
    assert t is not None, f"no pair tiles under {run.url('pairs')}"
    return t.to_pandas()


def _assert_complete_pairs(df, cfg, layers: dict[str, int]) -> None:
    """Exactly L(L-1)/2 rows per model and measure, no duplicates, valid i < j."""
    assert not df.duplicated(PAIR_KEY).any(), df[df.duplicated(PAIR_KEY, keep=False)]
    counts = df.groupby(["model_a", "measure"]).size().to_dict()
    expected = {(m.id, ms.name): layers[m.id] * (layers[m.id] - 1) // 2 for m in cfg.models for ms in cfg.measures}
    assert counts == expected
    assert (df["layer_a_index"] < df["layer_b_index"]).all()
    assert (df["model_a"] == df["model_b"]).all()


def _tile_files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Visible tile files under a local run folder: relative path -> (mtime_ns, bytes)."""
    out = {}
    for p in sorted((root / "pairs").rglob("tile-*.parquet")):
        out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


# -- one local run shared by the read-only checks -------------------------------------------


@pytest.fixture(scope="module")
def local_run(tiny_checkpoints, ray_local, study_config, tmp_path_factory):
    from workflows.study import run_study

    cfg = study_config(tiny_checkpoints, tmp_path_factory.mktemp("store"))
    result = run_study(cfg, show_progress=False)
    return cfg, result, _run_store(cfg)


@pytest.mark.ray
def test_run_result_points_at_the_run_folder(local_run, tiny_layers) -> None:
    from workflows.compare import make_tiles

    cfg, result, run = local_run
    assert result.run_uri == run.url()
    assert result.failures == []
    assert result.tiles_reused == 0
    assert result.tiles_total == sum(len(make_tiles(tiny_layers[m.id], 8)) for m in cfg.models) * len(cfg.measures)
    status = run.read_json("run.json")
    assert status["status"] == "complete" and status["run_id"] == cfg.resolved_run_id
    assert run.read_json("config.json")["results_hash"] == cfg.results_hash()
    usage = status["compare_usage"]  # one report per tile task, comparisons inside each task's time
    assert usage["tasks"] == result.tiles_total and usage["cpus"] == status["ray"]["cpus"]
    assert 0 < usage["compare_seconds"] <= usage["task_seconds"]
    assert 0 < usage["busy_share"] <= 1.05 and 0 <= usage["overhead_share"] < 1


@pytest.mark.ray
def test_pair_table_is_complete_without_duplicates(local_run, tiny_layers) -> None:
    cfg, _, run = local_run
    df = _pairs(run)
    for col in DESIGN_COLUMNS:
        assert col in df.columns, col
    _assert_complete_pairs(df, cfg, tiny_layers)
    ok = df["error"].isna()
    assert df.loc[ok, "value"].notna().all()
    assert df.loc[~ok, "value"].isna().all()
    assert (df["n_samples"] == cfg.inputs.n).all()
    assert (df["study"] == cfg.study).all() and (df["run_id"] == cfg.resolved_run_id).all()
    for m in cfg.measures:
        assert (df.loc[df["measure"] == m.name, "config_hash"] == cfg.results_hash(m)).all()
    assert set(df["kind"]) <= {"distance", "similarity"}
    for p in df["params"].unique():
        assert isinstance(json.loads(p), dict)


@pytest.mark.ray
def test_pair_rows_name_the_points_of_the_model(local_run) -> None:
    cfg, _, run = local_run
    df = _pairs(run)
    points = run.read_table("points.parquet").to_pandas()
    name = {(r.model, r.layer_index): r.layer for r in points.itertuples()}
    for side in ("a", "b"):
        got = [name[(m, i)] for m, i in zip(df[f"model_{side}"], df[f"layer_{side}_index"])]
        assert got == list(df[f"layer_{side}"])


@pytest.mark.ray
def test_points_table_matches_the_models_points(local_run, tiny_checkpoints, tiny_layers) -> None:
    from layergw import families

    cfg, _, run = local_run
    points = run.read_table("points.parquet").to_pandas()
    for spec in cfg.models:
        mine = points[points["model"] == spec.id].sort_values("layer_index")
        expected = families.get("modsum").load(tiny_checkpoints[spec.id]).points()
        assert len(expected) == tiny_layers[spec.id]
        assert list(mine["layer_index"]) == list(range(len(expected)))
        assert list(mine["layer"]) == [p.name for p in expected]
        assert list(mine["display"]) == [p.display for p in expected]
        assert list(mine["role"]) == [p.role for p in expected]
        assert list(mine["block"]) == [p.block for p in expected]
        for k, dim in zip(mine["layer_index"], mine["dim"]):
            assert run.read_array(f"reps/{spec.id}/{k}.npy").shape == (cfg.inputs.n, dim)


@pytest.mark.ray
def test_groups_have_one_row_per_layer_per_model_and_measure(local_run, tiny_layers) -> None:
    cfg, _, run = local_run
    groups = run.read_table("groups.parquet").to_pandas()
    for spec in cfg.models:
        for m in cfg.measures:
            for method in ("spectral", "segment"):
                g = groups[(groups["model"] == spec.id) & (groups["measure"] == m.name) & (groups["method"] == method)]
                assert sorted(g["layer_index"]) == list(range(tiny_layers[spec.id]))
                assert g["group"].notna().all()
                assert g["k"].nunique() == 1
                assert g["group"].nunique() == g["k"].iloc[0]
                if method == "segment":  # contiguous: groups rise along depth
                    assert (g.sort_values("layer_index")["group"].diff().dropna() >= 0).all()
    assert set(groups["model"]) == {m.id for m in cfg.models}


@pytest.mark.ray
def test_targets_rank_every_layer_for_each_task_target(local_run, tiny_layers, tiny_tasks) -> None:
    from layergw.data.modsum import make_modsum

    cfg, _, run = local_run
    targets = run.read_table("targets.parquet").to_pandas()
    for spec in cfg.models:
        mine = targets[targets["model"] == spec.id]
        assert set(mine["target"]) == set(make_modsum(tiny_tasks[spec.id]).target_names())
        for target, t in mine.groupby("target"):
            assert sorted(t["layer_index"]) == list(range(tiny_layers[spec.id])), target
            assert t["value"].notna().all()
            # rank 1 is the closest layer (gw is a distance); equal values (one tensor under two
            # names, Resid-Post of block l and Resid-Pre of block l+1) share a rank
            values = t["value"].to_numpy()
            assert [int(r) for r in t["rank"]] == [1 + int((values < v).sum()) for v in values], target
            assert t.loc[t["rank"] == 1, "value"].iloc[0] == t["value"].min()
    assert set(targets["measure"]) == {m.name for m in cfg.targets.measures}


class _Sections(HTMLParser):
    """Each model section of the report page: its heatmap figures (image file and caption)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[dict]] = {}
        self._model: str | None = None
        self._figure: dict | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("class") == "model":
            self._model = a["id"].removeprefix("model-")
            self.sections[self._model] = []
        elif tag == "figure" and self._model and a.get("class") == "heatmap":
            self._figure = {"caption": ""}
            self.sections[self._model].append(self._figure)
        elif tag == "img" and self._figure is not None:
            self._figure["src"] = a["src"]
        elif tag == "figcaption" and self._figure is not None:
            self._caption = True

    def handle_endtag(self, tag):
        if tag == "section":
            self._model = None
        elif tag == "figure":
            self._figure = None
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        if self._caption and self._figure is not None:
            self._figure["caption"] += data


@pytest.mark.ray
def test_report_has_a_heatmap_section_per_model_with_one_figure_per_measure(local_run) -> None:
    cfg, result, run = local_run
    assert result.report_uri == run.url("report/index.html")
    parser = _Sections()
    parser.feed(run.read_bytes("report/index.html").decode())
    assert sorted(parser.sections) == sorted(spec.id for spec in cfg.models)
    for model, figures in parser.sections.items():
        assert [f["caption"].split(" (")[0] for f in figures] == [m.name for m in cfg.measures], model
        for f in figures:
            assert run.read_bytes(f"report/{f['src']}").startswith(b"\x89PNG")
            assert model in f["src"]


@pytest.mark.ray
def test_report_rebuilds_from_stored_results_without_solving_and_equals_the_first(local_run, monkeypatch) -> None:
    import ot

    from layergw.measures.base import Measure
    from layergw.report import build_report

    cfg, _, run = local_run
    first = {p: run.read_bytes(p) for p in run.list_files("report")}
    assert any(p.startswith("report/diag-") for p in first)  # the diagnostics were drawn, from stored tables

    def no_solver(*args, **kwargs):
        raise AssertionError("the report ran a measure or solver")

    for name in ("prepare", "compare", "score"):
        monkeypatch.setattr(Measure, name, no_solver)
    for name in ("gromov_wasserstein", "gromov_wasserstein2"):
        monkeypatch.setattr(ot.gromov, name, no_solver)
    monkeypatch.setattr(ot, "emd", no_solver)
    for p in first:
        run.delete(p)
    build_report(run)
    assert {p: run.read_bytes(p) for p in run.list_files("report")} == first


@pytest.mark.ray
def test_two_spellings_of_one_measure_variant_are_computed_once_in_one_folder(tiny_checkpoints, tiny_layers,
                                                                               ray_local, study_config,
                                                                               tmp_path) -> None:
    from workflows.study import run_study

    one = {"tiny_fmod": tiny_checkpoints["tiny_fmod"]}
    cfg = study_config(one, tmp_path / "store", measures=["gw", {"name": "gw", "params": {"normalize": "none",
                                                                                         "init": "product"}}],
                       targets={"measures": ["gw", "linear_probe"]}, inputs={"n": 12, "seed": 0})
    run_study(cfg, show_progress=False)
    run = _run_store(cfg)
    targets = run.read_table("targets.parquet").to_pandas()  # one table per target and targets measure
    assert sorted(targets.groupby(["target", "measure"]).size().items()) == [
        (("c", "gw"), tiny_layers["tiny_fmod"]), (("c", "linear_probe"), tiny_layers["tiny_fmod"])]
    assert [p.name for p in (run.local_path() / "pairs" / "tiny_fmod").iterdir()] == [cfg.measures[0].key]
    df = _pairs(run)
    L = tiny_layers["tiny_fmod"]
    assert len(df) == L * (L - 1) // 2 and df["params"].nunique() == 1
    assert len(run.read_table("groups.parquet").to_pandas().groupby(["measure", "params"])) == 1


@pytest.mark.ray
def test_rerun_skips_every_tile_and_leaves_files_untouched(local_run, tiny_layers) -> None:
    from workflows.study import run_study

    cfg, first, run = local_run
    before = _tile_files(run.local_path())
    assert len(before) == first.tiles_total
    result = run_study(cfg, show_progress=False)
    assert result.tiles_reused == result.tiles_total == first.tiles_total
    assert result.run_uri == first.run_uri
    assert _tile_files(run.local_path()) == before
    _assert_complete_pairs(_pairs(run), cfg, tiny_layers)
    assert run.read_json("run.json")["tiles_reused"] == result.tiles_total
    assert run.read_json("run.json")["compare_usage"]["tasks"] == 0  # nothing ran


@pytest.mark.ray
def test_adding_a_measure_reuses_the_run_and_computes_only_its_tiles(local_run, tiny_layers, study_config, tmp_path) -> None:
    from workflows.compare import make_tiles
    from workflows.study import run_study

    cfg, first, run = local_run
    # a copy, so the shared run stays as the other tests expect it
    store = tmp_path / "store"
    shutil.copytree(Path(cfg.store), store)
    old_cfg = study_config({m.id: m.checkpoint for m in cfg.models}, store)
    new_cfg = study_config({m.id: m.checkpoint for m in cfg.models}, store, measures=["gw", "cka", "rsm"])
    assert new_cfg.resolved_run_id == old_cfg.resolved_run_id == cfg.resolved_run_id
    new_run = _run_store(new_cfg)
    before = _tile_files(new_run.local_path())
    targets_before = {p: p.stat().st_mtime_ns for p in (new_run.local_path() / "targets").rglob("*.parquet")}
    assert targets_before

    result = run_study(new_cfg, show_progress=False)
    new_tiles = sum(len(make_tiles(tiny_layers[m.id], 8)) for m in cfg.models)
    assert result.run_uri == new_run.url()
    assert result.tiles_reused == first.tiles_total
    assert result.tiles_total - result.tiles_reused == new_tiles
    after = _tile_files(new_run.local_path())
    assert {p: after[p] for p in before} == before
    added = set(after) - set(before)
    assert len(added) == new_tiles
    from workflows.config import MeasureSpec

    assert all(p.split("/")[2] == MeasureSpec(name="rsm").key for p in added)
    assert {p: p.stat().st_mtime_ns for p in targets_before} == targets_before
    df = _pairs(new_run)
    _assert_complete_pairs(df, new_cfg, tiny_layers)
    groups = new_run.read_table("groups.parquet").to_pandas()
    assert set(groups["measure"]) == {"gw", "cka", "rsm"}


@pytest.mark.long
@pytest.mark.ray
def test_a_batched_measure_compares_each_tile_in_one_call_with_the_values_of_its_pairs(local_run, tiny_layers,
                                                                                      study_config, tmp_path) -> None:
    from layergw import layout, measures
    from workflows.study import run_study

    cfg, _, _ = local_run
    store = tmp_path / "store"
    shutil.copytree(Path(cfg.store), store)
    params = {"device": "cpu", "max_iter": 50, "sinkhorn_max_iter": 100, "sinkhorn_tol": 1e-6}
    batch = {"name": "gw_batch", "params": params}
    new_cfg = study_config({m.id: m.checkpoint for m in cfg.models}, store, measures=["gw", "cka", batch])
    run_study(new_cfg, show_progress=False)
    run = _run_store(new_cfg)
    df = _pairs(run)
    rows = df[df["measure"] == "gw_batch"]
    _assert_complete_pairs(df, new_cfg, tiny_layers)
    m = measures.get("gw_batch", **params)
    model = new_cfg.models[0].id
    geoms = {k: m.prepare(run.read_array(layout.rep(model, k))) for k in range(tiny_layers[model])}
    mine = rows[rows["model_a"] == model]
    assert len(mine) and mine["error"].isna().all()
    for r in mine.itertuples():
        assert r.value == pytest.approx(m.compare(geoms[r.layer_a_index], geoms[r.layer_b_index]).value, rel=1e-9)


# -- S3 ------------------------------------------------------------------------------------


@pytest.mark.long
@pytest.mark.ray
@pytest.mark.s3
def test_run_on_s3_store_writes_and_reads_back(tiny_checkpoints, tiny_layers, study_config, ray_local, s3_uri, s3_server) -> None:
    from layergw.store import ResultStore
    from workflows.study import run_study

    cfg = study_config(tiny_checkpoints, s3_uri, measures=["gw"])
    result = run_study(cfg, show_progress=False)
    run = ResultStore(s3_uri).child(cfg.study, cfg.resolved_run_id)
    assert result.run_uri == run.uri
    assert result.run_uri.startswith("s3://")
    # the printed run folder alone (no endpoint in the environment) reaches the store
    assert ResultStore(result.run_uri).endpoint == run.endpoint
    _assert_complete_pairs(_pairs(run), cfg, tiny_layers)
    assert run.exists("report/index.html")
    assert run.exists("groups.parquet") and run.exists("targets.parquet")
    # the printed run folder plus the endpoint reaches the same results
    again = ResultStore(result.run_uri, endpoint=f"http://{s3_server}")
    assert again.read_tables("pairs").num_rows == _pairs(run).shape[0]
    # a rerun on S3 skips everything
    rerun = run_study(cfg, show_progress=False)
    assert rerun.tiles_reused == rerun.tiles_total == result.tiles_total


@pytest.mark.long
@pytest.mark.ray
@pytest.mark.gcs
def test_run_on_gcs_store_writes_and_reads_back(tiny_checkpoints, tiny_layers, study_config, ray_local, gs_uri) -> None:
    """The same study on the GCS emulator: every pair row once, the report, and a rerun that
    finds every tile done."""
    from layergw.store import ResultStore
    from workflows.study import run_study

    cfg = study_config(tiny_checkpoints, gs_uri, measures=["cka"])
    result = run_study(cfg, show_progress=False)
    run = ResultStore(result.run_uri)
    assert result.run_uri.startswith("gs://") and run.endpoint == ResultStore(gs_uri).endpoint
    _assert_complete_pairs(_pairs(run), cfg, tiny_layers)
    assert run.exists("report/index.html") and run.exists("groups.parquet") and run.exists("targets.parquet")
    rerun = run_study(cfg, show_progress=False)
    assert rerun.tiles_reused == rerun.tiles_total == result.tiles_total


# -- failures ------------------------------------------------------------------------------


@pytest.mark.ray
def test_nan_representation_fails_naming_model_and_point(tiny_checkpoints, tiny_tasks, study_config, ray_local, tmp_path) -> None:
    import torch

    from layergw.store import ResultStore
    from layergw.families.modsum.checkpoint import load_checkpoint, save_checkpoint
    from workflows.study import run_study

    f_mod_id = next(mid for mid, task in tiny_tasks.items() if task == "f_mod")
    model, record = load_checkpoint(tiny_checkpoints[f_mod_id])
    state = model.state_dict()
    state["blocks.0.mlp.W_in.weight"] = torch.full_like(state["blocks.0.mlp.W_in.weight"], float("nan"))
    model.load_state_dict(state)
    record = {**record, "model_id": "nan_model"}
    path = save_checkpoint(model, record, tmp_path / "ckpt")
    cfg = study_config({"nan_model": str(path.with_suffix(""))}, tmp_path / "store", measures=["gw"])
    with pytest.raises(Exception) as ei:
        run_study(cfg, show_progress=False)
    cause = getattr(ei.value, "cause", None) or ei.value  # what the CLI prints
    msg = str(cause)
    assert isinstance(cause, ValueError), type(cause)
    assert "nan_model" in msg
    # W_in feeds the MLP pre-activation first: the first non-finite point is mlp.hook_pre
    assert "blocks.0.mlp.hook_pre" in msg
    assert "finite" in msg.lower() or "nan" in msg.lower()
    # the model's extraction is not marked complete, so a fixed checkpoint is re-extracted
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)
    assert not run.exists("reps/nan_model/done.json")


def test_unreachable_store_fails_fast_before_ray(study_config, tiny_checkpoints, monkeypatch) -> None:
    import importlib

    from layergw.store import StoreError
    from workflows.study import run_study

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)

    def no_ray(*a, **k):
        raise AssertionError("Ray work started before the store was checked")

    monkeypatch.setattr(importlib.import_module("workflows.runtime"), "init_ray", no_ray)
    monkeypatch.setattr(importlib.import_module("workflows.extract"), "run_extract", no_ray)
    uri = "s3://bucket/x?endpoint_override=127.0.0.1:1&scheme=http"
    cfg = study_config(tiny_checkpoints, uri, measures=["gw"])
    t0 = time.monotonic()
    with pytest.raises(StoreError) as ei:
        run_study(cfg, show_progress=False)
    elapsed = time.monotonic() - t0
    msg = str(ei.value)
    assert "s3://bucket/x" in msg and "127.0.0.1:1" in msg
    assert elapsed < 30, f"took {elapsed:.1f}s to notice an unreachable store"


def test_missing_checkpoint_fails_before_any_work_naming_the_model(study_config, tmp_path) -> None:
    from workflows.config import ConfigError
    from workflows.study import run_study

    cfg = study_config({"ghost": str(tmp_path / "nope")}, tmp_path / "store", measures=["gw"])
    with pytest.raises(ConfigError, match=r"models\[0\] \(ghost\).*not found"):
        run_study(cfg, show_progress=False)
    assert not (tmp_path / "store").exists()


# -- kill and resume (subprocesses with their own Ray) --------------------------------------


def _proc_session(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


def _leftovers(sid: int, marker: str) -> list[int]:
    """Live processes in session ``sid`` or whose command line names ``marker``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        pid = int(d.name)
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if _proc_session(pid) == sid or marker in cmd:
            out.append(pid)
    return out


def _wait_gone(sid: int, marker: str, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    left = _leftovers(sid, marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _leftovers(sid, marker)
    return left


def _cli(args: list[str], ray_tmp: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # never join another cluster (the in-process one of this session)
    env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1")
    return subprocess.Popen([PYTHON, "-m", "workflows.cli", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.mark.long
@pytest.mark.ray
def test_killed_run_resumes_without_redoing_finished_tiles(tiny_checkpoints, tiny_layers, study_dict, tmp_path) -> None:
    from workflows.compare import make_tiles
    from workflows.config import load_config

    data = study_dict(tiny_checkpoints, tmp_path / "store", measures=["gw"],
                       compare={"tile_size": 2, "max_in_flight": 1})
    cfg_path = tmp_path / "study.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    root = Path(cfg.store) / cfg.study / cfg.resolved_run_id
    total = sum(len(make_tiles(tiny_layers[m.id], 2)) for m in cfg.models)
    # a short private Ray temp dir: the child starts its own cluster, never this session's,
    # and its processes are recognisable (unix socket paths must stay short)
    ray_tmp = tempfile.mkdtemp(prefix="lgw-", dir="/tmp")
    procs: list[subprocess.Popen] = []
    try:
        killed = _cli(["run", str(cfg_path), "--no-progress"], ray_tmp, tmp_path / "killed.log")
        procs.append(killed)
        deadline = time.monotonic() + 240
        seen = 0
        while time.monotonic() < deadline and killed.poll() is None:
            seen = len(list((root / "pairs").rglob("tile-*.parquet"))) if (root / "pairs").exists() else 0
            if seen >= 10:
                break
            time.sleep(0.05)
        assert killed.poll() is None, (f"the run ended (rc {killed.returncode}) before it could be killed:\n"
                                       + (tmp_path / "killed.log").read_text()[-3000:])
        assert 10 <= seen < total
        during = json.loads((root / "run.json").read_text())
        assert (during["status"], during["stage"]) == ("running", "compare"), during
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        left = _wait_gone(killed.pid, ray_tmp)
        assert not left, f"processes of the killed run still alive: {left}"

        finished = _tile_files(root)
        assert 0 < len(finished) < total
        for rel in finished:  # every visible tile is a whole, readable table
            t = pq.read_table(root / rel)
            i0, j0 = (int(x) for x in Path(rel).stem.split("-")[1:])
            model = rel.split("/")[1]
            tile = next(t for t in make_tiles(tiny_layers[model], 2) if (t.i0, t.j0) == (i0, j0))
            assert t.num_rows == len(tile.pairs), rel

        # overrides before the options: `run CONFIG --no-progress key=value` is rejected by the
        # parser (BUG, see tests/workflows/test_cli.py::test_run_overrides_after_options_are_accepted)
        resumed = _cli(["run", str(cfg_path), "compare.max_in_flight=4", "--no-progress"], ray_tmp,
                       tmp_path / "resumed.log")
        procs.append(resumed)
        rc = resumed.wait(timeout=300)
        out = (tmp_path / "resumed.log").read_text()
        assert rc == 0, out[-3000:]
        # same run folder (a change of the config schema in between would change the run id)
        assert f"run finished ({len(finished)} of {total} tiles were already done): {root.as_uri()}" in out, out[-3000:]
        assert f"({len(finished)} of {total} tiles were already done)" in out
        # progress lines: the resumed run counts the finished pairs as done and ends at 100%
        started = re.search(r"compare: (\d+) pairs, (\d+) already done", out)
        assert started, out[-3000:]
        n, already = int(started[1]), int(started[2])
        assert 0 < already < n
        assert f"compare: {n}/{n} pairs (100%)" in out, out[-3000:]
        assert _wait_gone(resumed.pid, ray_tmp) == [], "the resumed run left processes behind"

        after = _tile_files(root)
        assert len(after) == total
        assert {p: after[p] for p in finished} == finished
        _assert_complete_pairs(_pairs(_run_store(cfg)), cfg, tiny_layers)
        final = json.loads((root / "run.json").read_text())
        assert (final["status"], final["stage"]) == ("complete", "done")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        for pid in _leftovers(-1, ray_tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.ray
def test_two_variants_of_a_measure_stay_apart_in_groups(tiny_checkpoints, tiny_tasks, tiny_layers, study_config,
                                                        ray_local, tmp_path) -> None:
    from workflows.study import run_study

    mid = next(m for m, task in tiny_tasks.items() if task == "f_mod")
    cfg = study_config({mid: tiny_checkpoints[mid]}, tmp_path / "store",
                       measures=["gw", {"name": "gw", "params": {"normalize": "max"}}],
                       targets={"enabled": False})
    run_study(cfg, show_progress=False)
    run = _run_store(cfg)
    pairs = _pairs(run)
    # the pair table itself keeps the variants apart through `params`
    assert pairs["params"].nunique() == 2
    assert not pairs.duplicated(["model_a", "measure", "params", "layer_a_index", "layer_b_index"]).any()
    groups = run.read_table("groups.parquet").to_pandas()
    assert len(groups) == 2 * 2 * tiny_layers[mid]  # two variants, two methods
    # one row per layer per measure variant and method, told apart by the same params as the pair rows
    assert set(groups["params"]) == set(pairs["params"])
    assert not groups.duplicated(["model", "measure", "params", "method", "layer_index"]).any()


# A run folder keeps one tiling: tiles of another size would overlap finished ones
# (duplicates) or leave gaps, so a different tile size under the same run_id is refused.
@pytest.mark.ray
def test_changing_tile_size_under_an_explicit_run_id_is_refused(tiny_checkpoints, tiny_tasks, tiny_layers,
                                                                           study_config, ray_local, tmp_path) -> None:
    from workflows.study import run_study

    mid = next(m for m, task in tiny_tasks.items() if task == "f_mod")
    common = dict(run_id="fixed", measures=["gw"], targets={"enabled": False})
    first = study_config({mid: tiny_checkpoints[mid]}, tmp_path / "store", compare={"tile_size": 8}, **common)
    second = study_config({mid: tiny_checkpoints[mid]}, tmp_path / "store", compare={"tile_size": 4}, **common)
    from workflows.config import ConfigError

    run_study(first, show_progress=False)
    with pytest.raises(ConfigError, match="tile_size=8.*has 4"):
        run_study(second, show_progress=False)
    _assert_complete_pairs(_pairs(_run_store(second)), second, tiny_layers)


@pytest.mark.ray
def test_a_fixed_k_larger_than_a_model_fails_before_any_comparison(tiny_checkpoints, tiny_layers, study_config,
                                                                   ray_local, tmp_path) -> None:
    from layergw.store import ResultStore
    from workflows.config import ConfigError
    from workflows.study import run_study

    small = min(tiny_layers, key=tiny_layers.get)
    k = tiny_layers[small] + 1
    cfg = study_config(tiny_checkpoints, tmp_path / "store", measures=["rsm"], grouping={"k": k})
    with pytest.raises(ConfigError, match=rf"grouping.k={k} is more groups than these models have points to group "
                                          rf"\(constant points are left out\): {small} \({tiny_layers[small]}\)"):
        run_study(cfg, show_progress=False)
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)
    assert not run.exists("pairs")

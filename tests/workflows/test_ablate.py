"""Ablation stage on Ray: every cell of the grid once, reruns reuse finished cells, a killed
study resumes with only the missing ones, and bad grids fail naming what is wrong."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
SELECTORS = ["first", "last", "block_influence", "angular", "random"]
CELL = ["model", "ablation", "kept_blocks", "first_trained_block", "selector", "seed", "metric"]


def _config(study_config, tiny_checkpoints, tmp_path, **ablate):
    two = {"tiny_fmod3": tiny_checkpoints["tiny_fmod3"]}  # 2 blocks
    entry = {"model": "tiny_fmod3", "selectors": SELECTORS, "seeds": [0, 1], "params": {"epochs": 2}, **ablate}
    return study_config(two, tmp_path / "store", measures=["cka"], targets={"enabled": False},
                        inputs={"n": 16, "seed": 0}, ablate=[entry])


def _html_rows(section: str) -> list[list[str]]:
    import html
    import re

    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", section, flags=re.S) if "<td" in tr]


def _report_tables_equal_the_stored_ones(root: Path, page: str) -> None:
    """The knees, prune plan and measure ranking are Parquet beside ablations.parquet, and the
    report's tables show exactly their rows."""
    knees = pq.read_table(root / "knees.parquet").to_pandas()
    plan = pq.read_table(root / "prune_plan.parquet").to_pandas()
    ranking = pq.read_table(root / "measure_ranking.parquet").to_pandas()
    assert pq.read_table(root / "ablation_summary.parquet").num_rows > 0
    k = knees.set_index("model").loc["tiny_fmod3"]
    assert f"prune to {int(k.prune_knee)}, freeze up to {int(k.freeze_knee)}" in page
    shown = page[page.index("Which measure predicts"):]
    shown = _html_rows(shown[:shown.index("</table>")])
    from layergw.report.html import fmt

    assert [r[1:4] for r in shown] == [[m, str(n), fmt(round(d, 2))]
                                       for m, n, d in zip(ranking["method"], ranking["models"], ranking["distance"])]
    assert len(plan) == len(ranking) and set(plan["method"]) == set(ranking["method"])
    proposed = page[page.index("proposed prune N"):]
    proposed = _html_rows(proposed[:proposed.index("</table>")])
    assert [[r[1], int(r[2]), int(r[3])] for r in proposed] == [
        [m, int(p), int(f)] for m, p, f in zip(plan["method"], plan["proposed_prune"], plan["proposed_freeze"])]


def _cells(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (root / "ablations").rglob("*.parquet")}


@pytest.mark.long
@pytest.mark.ray
def test_every_cell_once_and_a_rerun_computes_only_missing_cells(study_config, tiny_checkpoints, ray_local,
                                                                 tmp_path) -> None:
    from workflows.study import run_study

    cfg = _config(study_config, tiny_checkpoints, tmp_path)
    run_study(cfg, show_progress=False)
    root = Path(cfg.store) / cfg.study / cfg.resolved_run_id
    table = pq.read_table(root / "ablations.parquet").to_pandas()
    assert not table.duplicated(CELL).any()
    acc = table[table["metric"] == "accuracy"]
    prune = acc[acc["ablation"] == "prune"]
    assert set(acc["ablation"]) == {"prune", "freeze", "checkpoint"}
    assert sorted(set(prune["kept_blocks"])) == [0, 1, 2] and set(acc["seed"]) == {0, 1}
    assert set(prune[prune["kept_blocks"] == 1]["selector"]) == set(SELECTORS)  # baselines where they differ
    assert set(prune[prune["kept_blocks"] != 1]["selector"]) == {"first"}
    assert sorted(set(acc[acc["ablation"] == "freeze"]["first_trained_block"])) == [0, 1, 2]
    assert ((acc["value"] >= 0) & (acc["value"] <= 1)).all() and (acc["split"] == "validation").all()
    # pruning to both blocks trains the network freezing at k = 0 trains: one task, equal rows
    whole = prune[prune["kept_blocks"] == 2].set_index("seed")["value"]
    k0 = acc[(acc["ablation"] == "freeze") & (acc["first_trained_block"] == 0)].set_index("seed")["value"]
    assert whole.sort_index().tolist() == k0.sort_index().tolist()
    assert table.groupby("seed")["seconds"].nunique().max() < acc.groupby("seed").size().max()
    assert (root / "ablations" / "tiny_fmod3" / "blocks.json").exists()
    assert not [p for p in (root / "ablations").rglob("*") if p.is_file() and "work" in p.parts]  # states removed
    # the checkpoint as trained, once, scored as its training scored it
    ref = acc[acc["ablation"] == "checkpoint"]
    record = json.loads(Path(tiny_checkpoints["tiny_fmod3"] + ".json").read_text())
    assert len(ref) == 1 and ref["epochs"].iloc[0] == 0
    assert ref["value"].iloc[0] == pytest.approx(record["final_val_acc"], abs=1e-6)
    page = (root / "report" / "index.html").read_text()
    assert "Ablations: tiny_fmod3" in page and "Which measure predicts the ablations" in page
    assert "The checkpoint as trained" in page
    _report_tables_equal_the_stored_ones(root, page)

    before = _cells(root)
    gone = sorted(before)[:3]
    for name in gone:
        (root / "ablations" / "tiny_fmod3" / name).unlink()
    run_study(cfg, show_progress=False)
    after = _cells(root)
    assert set(after) == set(before)
    assert sorted(n for n in after if after[n] != before[n]) == gone  # only the missing cells ran again
    again = pq.read_table(root / "ablations.parquet").to_pandas()
    assert len(again) == len(table) and not again.duplicated(CELL).any()


@pytest.mark.long
@pytest.mark.ray
def test_a_study_killed_in_the_ablation_stage_resumes_with_the_missing_cells(study_dict, tiny_checkpoints,
                                                                            tmp_path) -> None:
    from workflows.config import load_config

    data = study_dict({"tiny_fmod3": tiny_checkpoints["tiny_fmod3"]}, tmp_path / "store", measures=["cka"],
                      targets={"enabled": False}, inputs={"n": 16, "seed": 0},
                      ablate=[{"model": "tiny_fmod3", "selectors": SELECTORS, "seeds": [0, 1, 2],
                               "params": {"epochs": 150}}])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    root = Path(cfg.store) / cfg.study / cfg.resolved_run_id
    ray_tmp = tempfile.mkdtemp(prefix="lgw-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    procs = []
    try:
        killed = subprocess.Popen([PYTHON, "-m", "workflows.cli", "run", str(path), "--no-progress"], cwd=REPO,
                                  env=env, start_new_session=True, stdout=(tmp_path / "killed.log").open("wb"),
                                  stderr=subprocess.STDOUT)
        procs.append(killed)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and killed.poll() is None:
            if (root / "ablations").exists() and len([p for p in _cells(root) if p.startswith(("prune", "freeze"))]) >= 4:
                break
            time.sleep(0.05)
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        finished = _cells(root)
        assert 4 <= len([n for n in finished if n != "blocks.json"]) < 30
        for name in finished:  # every visible cell is whole
            assert pq.read_table(root / "ablations" / "tiny_fmod3" / name).num_rows > 0
        assert not (root / "ablations.parquet").exists()
        resumed = subprocess.Popen([PYTHON, "-m", "workflows.cli", "run", str(path), "--no-progress"], cwd=REPO,
                                   env=env, start_new_session=True, stdout=(tmp_path / "resumed.log").open("wb"),
                                   stderr=subprocess.STDOUT)
        procs.append(resumed)
        assert resumed.wait(timeout=400) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
        after = _cells(root)
        assert {n: after[n] for n in finished} == finished  # finished cells were not run again
        table = pq.read_table(root / "ablations.parquet").to_pandas()
        acc = table[table["metric"] == "accuracy"]
        # (3 + 4 + 3 cells) x 3 seeds and the checkpoint, once each
        assert len(acc) == 31 and not table.duplicated(CELL).any()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def test_bad_grids_fail_naming_what_is_wrong(study_config, tiny_checkpoints, tmp_path, monkeypatch) -> None:
    from workflows.config import ConfigError
    from workflows.study import check_plan

    with pytest.raises(ValueError, match=r"unknown selector 'angle' \(did you mean 'angular'\?\)"):
        _config(study_config, tiny_checkpoints, tmp_path, selectors=["angle"])
    with pytest.raises(ValueError, match=r"ablate\[0\]\.model: unknown model id 'nobody'"):
        study_config({"m": tiny_checkpoints["tiny_fmod"]}, tmp_path, ablate=[{"model": "nobody"}])
    cfg = _config(study_config, tiny_checkpoints, tmp_path)
    check_plan(cfg)
    from layergw.families.base import Family
    from layergw.families.modsum import ModSumFamily

    monkeypatch.setattr(ModSumFamily, "ablate", Family.ablate)  # a family that cannot truncate its models
    with pytest.raises(ConfigError, match=r"ablate\[0\] \(tiny_fmod3\): model family 'modsum' cannot prune or freeze"):
        check_plan(cfg)


def test_a_depth_outside_the_model_and_a_model_without_blocks_are_refused() -> None:
    from workflows.ablate import plan_model
    from workflows.config import AblateSpec, ConfigError
    from workflows.extract import Manifest

    manifest = Manifest("m", 10, 0, "all", (), (), "cpu", 0.0, {}, 2)
    with pytest.raises(ConfigError, match=r"ablate\[0\] \(m\): depths \[3\] are outside 0..2"):
        plan_model(AblateSpec(model="m", depths=[3]), "ablate[0] (m)", manifest, None, None)
    none = Manifest("m", 10, 0, "all", (), (), "cpu", 0.0, {}, 0)
    with pytest.raises(ConfigError, match=r"model 'm' has no blocks to prune or freeze"):
        plan_model(AblateSpec(model="m", ablations=["freeze"]), "ablate[0] (m)", none, None, None)


def test_a_tasks_working_folder_is_named_by_the_network_it_trains_and_its_params():
    from workflows.ablate import work_name

    trains = ((0, 1, 2), 1, 0)
    name = work_name(trains, {"epochs": 2, "lr": 1e-3})
    assert name.startswith("keep0.1.2-k1-s0-") and name == work_name(trains, {"lr": 1e-3, "epochs": 2})
    assert work_name(trains, {"epochs": 3, "lr": 1e-3}) != name  # another recipe never resumes this state
    assert work_name(((0, 1, 2), 1, 1), {"epochs": 2, "lr": 1e-3}) != name
    assert work_name(((), 0, 0), {}).startswith("keep-none-k0-s0-")


@pytest.mark.s3
def test_an_hf_cell_of_a_trained_checkpoint_on_an_object_store_fine_tunes_from_the_download(tmp_path, s3_uri,
                                                                                          monkeypatch):
    """A ``train:`` checkpoint on an object store is downloaded to a temporary folder, and the
    Hugging Face fine-tuning loads from it: the folder must live until the cell is done (it was
    once removed first). The task's function runs here without Ray, on S3 (moto)."""
    transformers = pytest.importorskip("transformers")
    import torch

    from layergw.families.base import Ablation
    from layergw.interventions.ablate import Cell
    from layergw.store import ResultStore
    from workflows.ablate import cell_task
    from workflows.config import ModelSpec

    model_dir = tmp_path / "bert"
    words = ["good", "bad", "movie", "plot", "fun", "dull"]
    (model_dir).mkdir()
    (model_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast.from_pretrained(model_dir).save_pretrained(model_dir)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(model_dir)
    texts = tmp_path / "texts.tsv"
    texts.write_text("text\tlabel\n" + "".join(f"{w} movie\t{i % 2}\n" for i, w in enumerate(words)))

    study = ResultStore(s3_uri).child("study")
    ref = "job/0123456789abcdef/seed-0/final"
    for f in model_dir.iterdir():
        study.write_bytes(f"train/{ref}/{f.name}", f.read_bytes())
    run = study.child("run")
    spec = ModelSpec(id="bert", family="hf", checkpoint="train:job", params={"data": {"source": str(texts)}})
    spec = spec.model_copy(update={"checkpoint": f"train:{ref}"})  # as the train stage resolves it
    data = {"source": str(texts)}
    params = {"train": data, "eval": data, "batch_size": 3, "max_length": 8}
    cell = Cell(Ablation("prune", (0,)), "first")
    monkeypatch.setattr("workflows.runtime.worker_logging", lambda: None)  # a Ray worker's, not this process's
    n = cell_task._function(run, spec, [cell], params, 2)
    assert n > 0 and run.exists(f"ablations/bert/{cell.name}.parquet")
    assert run.list_files("ablations/bert/work") == []  # its working folder went with it

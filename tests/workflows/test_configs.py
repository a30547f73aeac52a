"""Every shipped study config validates and passes the up-front checks."""
from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert {"demo.yaml", "minilm_sst2.yaml", "resnet9_digits.yaml", "lm_skip.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_and_passes_check_plan(path):
    from workflows.config import load_config
    from workflows.study import check_plan

    cfg = load_config(path)
    check_plan(cfg)
    assert cfg.resolved_run_id

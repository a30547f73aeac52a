"""The study's GPU paths on a local Ray that has a GPU: two models' extraction tasks share it
with fractional GPUs and both run on CUDA. Skipped (saying why) where torch sees no GPU."""
from __future__ import annotations

from pathlib import Path

import pytest


pytestmark = pytest.mark.long  # GPU stages on a local Ray

@pytest.mark.gpu
@pytest.mark.ray
def test_two_models_share_one_gpu_for_extraction_and_run_on_cuda(tiny_checkpoints, study_config, ray_local,
                                                                 tmp_path) -> None:
    import json

    from workflows.study import run_study

    cfg = study_config(tiny_checkpoints, tmp_path / "store", measures=["cka"], targets={"enabled": False},
                       ray={"extract_num_gpus": 0.5})
    run_study(cfg, show_progress=False)
    root = Path(cfg.store) / cfg.study / cfg.resolved_run_id
    for model in tiny_checkpoints:
        manifest = json.loads((root / "reps" / model / "done.json").read_text())
        assert manifest["device"] == "cuda"

"""Tiny random-init models of every architecture of the table, from configs/zoo.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ZOO = yaml.safe_load((Path(__file__).parents[3] / "configs" / "zoo.yaml").read_text())
#: model_type -> its zoo entry (checkpoint random:<model_type>)
RANDOM = {m["checkpoint"][len("random:"):]: m for m in ZOO["models"] if m["checkpoint"].startswith("random:")}


@pytest.fixture(scope="session", autouse=True)
def _random_model_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random-init models are built into a cache of the test session, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LAYERGW_CACHE", str(tmp_path_factory.mktemp("layergw-cache")))
    yield
    mp.undo()


def zoo_model(model_type: str, points: str = "fine", **changes: Any):
    """The zoo's random-init ``model_type`` loaded as the hf family loads it (12 probe texts)."""
    from layergw import families

    params = {**RANDOM[model_type]["params"], "points": points, **changes}
    if "data" in params and params["data"].get("source") == "sst2":
        params["data"] = {"source": "sst2", "split": "dev", "max_rows": 12}
    return families.get("hf").load(f"random:{model_type}", **params)

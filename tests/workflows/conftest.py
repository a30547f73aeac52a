"""Fixtures for the workflow tests: two tiny modular-sum checkpoints, one in-process Ray,
and a helper that builds a small StudyConfig for them.

Test modules get these helpers through fixtures (``tiny_layers``, ``tiny_tasks``,
``study_dict``, ``study_config``), never by importing this file: with
``tests/workflows/__init__.py`` and no ``tests/__init__.py``, pytest's default import mode
names this package ``workflows``, the same as the real package, so ``import`` of a
conftest helper is ambiguous.

Everything is kept small (d_model 16, 2 heads -> 19 points per block, inputs n <= 32) so the
whole directory runs in a few minutes on a busy 2-core machine.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

#: Representation points per block of the tiny models: 7 + 6 * n_heads with n_heads = 2.
POINTS_PER_BLOCK = 19

F_MOD_ID = "tiny_fmod"
F_MOD3_ID = "tiny_fmod3"

#: Blocks of each tiny model, so tests can compute L without reading the checkpoint.
BLOCKS = {F_MOD_ID: 1, F_MOD3_ID: 2}
TASKS = {F_MOD_ID: "f_mod", F_MOD3_ID: "f_mod3"}


def n_layers(model_id: str) -> int:
    return POINTS_PER_BLOCK * BLOCKS[model_id]


_SMALL = dict(d_model=16, n_heads=2, d_head=8, d_mlp=32, max_epochs=3, eval_every=1)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny trained checkpoints: model id -> checkpoint path without suffix."""
    from layergw.families.modsum.checkpoint import save_checkpoint
    from layergw.families.modsum.training import ModSumTrainSpec, train_modsum

    out = tmp_path_factory.mktemp("checkpoints")
    specs = [
        ModSumTrainSpec(model_id=F_MOD_ID, task="f_mod", n_blocks=1, **_SMALL),
        ModSumTrainSpec(model_id=F_MOD3_ID, task="f_mod3", n_blocks=2, scheme="layerwise", **_SMALL),
    ]
    paths = {}
    for spec in specs:
        model, record = train_modsum(spec)
        path = save_checkpoint(model, record, out)
        paths[spec.model_id] = str(path.with_suffix(""))
    return paths


#: The dummy credentials tests/conftest.py gives moto; never real ones.
_DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard) for the whole session, shut down at the end."""
    import ray

    from workflows.runtime import init_ray

    # Ray workers inherit the environment of the moment Ray starts, so the dummy moto
    # credentials (tests/conftest.py sets them only when an S3 fixture runs) must be
    # there now, or S3 tests that run after this fixture get ACCESS_DENIED in workers.
    for key, value in _DUMMY_AWS.items():
        os.environ.setdefault(key, value)
    init_ray(None, 2)
    try:
        yield
    finally:
        ray.shutdown()


def config_dict(checkpoints: dict[str, str], store: str | Path, **changes: Any) -> dict:
    """The plain-dict study config for the tiny checkpoints (inputs n=24, gw and cka, tiles of 8)."""
    data: dict[str, Any] = {
        "study": "wf",
        "store": str(store),
        "models": [{"id": mid, "checkpoint": path} for mid, path in checkpoints.items()],
        "inputs": {"n": 24, "seed": 0},
        "measures": ["gw", "cka"],
        "compare": {"tile_size": 8},
    }
    data.update(changes)
    return data


def make_config(checkpoints: dict[str, str], store: str | Path, **changes: Any):
    """A validated StudyConfig for the tiny checkpoints; keyword arguments replace top-level keys."""
    from workflows.config import validate

    return validate(config_dict(checkpoints, store, **changes))


@pytest.fixture(scope="session")
def tiny_layers() -> dict[str, int]:
    """Model id -> number of representation points L of the tiny checkpoints."""
    return {mid: n_layers(mid) for mid in BLOCKS}


@pytest.fixture(scope="session")
def tiny_tasks() -> dict[str, str]:
    """Model id -> modular-sum task of the tiny checkpoints."""
    return dict(TASKS)


@pytest.fixture(scope="session")
def study_dict():
    """``study_dict(checkpoints, store, **top_level_changes)`` -> plain config dict."""
    return config_dict


@pytest.fixture(scope="session")
def study_config():
    """``study_config(checkpoints, store, **top_level_changes)`` -> validated StudyConfig."""
    return make_config

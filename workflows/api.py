"""The study runner behind ``layergw.run``: a config in any form, overrides, the Ray driver."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.config import ConfigError, StudyConfig, apply_values, read_config_file, validate


def _override_values(overrides: dict[str, Any]) -> list[tuple[str, list[str], Any]]:
    out = []
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or "" in key.split("."):
            raise ConfigError(f"overrides must map dotted config keys to values, got key {key!r}")
        out.append((f"{key}={value!r}", key.split("."), value))
    return out


def resolve(config: Any, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A ``StudyConfig`` from a YAML path, a dict or a ``StudyConfig``, with dotted overrides."""
    values = _override_values(overrides or {})
    if isinstance(config, (str, Path)):
        data, source = read_config_file(config), str(config)
    elif isinstance(config, StudyConfig):
        data, source = config.model_dump(mode="json", exclude_unset=True), "<StudyConfig>"
    elif isinstance(config, dict):
        data, source = config, "<dict>"
    else:
        raise ConfigError(f"config must be a YAML path, a dict or a StudyConfig, got {type(config).__name__}")
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level, got {type(data).__name__}")
    return validate(apply_values(data, values), source)


def run(config: Any, *, store: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    """Run (or resume) a study without a progress bar; the run folder's URI."""
    from workflows.study import run_study

    cfg = resolve(config, overrides)
    return run_study(cfg, store_uri=store, show_progress=False).run_uri

"""The study runner behind ``layergw.run``: a config in any form, overrides, the Ray driver."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.config import ConfigError, StudyConfig, apply_overrides, load_config, validate


def _override_items(overrides: dict[str, Any]) -> list[str]:
    import json

    items = []
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"overrides must map dotted config keys to values, got key {key!r}")
        items.append(f"{key}={json.dumps(value)}")  # JSON is YAML: the value keeps its type
    return items


def resolve(config: Any, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A ``StudyConfig`` from a YAML path, a dict or a ``StudyConfig``, with dotted overrides."""
    items = _override_items(overrides or {})
    if isinstance(config, (str, Path)):
        return load_config(config, items)
    if isinstance(config, StudyConfig):
        return validate(apply_overrides(config.model_dump(mode="json", exclude_unset=True), items), "<StudyConfig>")
    if isinstance(config, dict):
        return validate(apply_overrides(config, items), "<dict>")
    raise ConfigError(f"config must be a YAML path, a dict or a StudyConfig, got {type(config).__name__}")


def run(config: Any, *, store: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    """Run (or resume) a study without a progress bar; the run folder's URI."""
    from workflows.study import run_study

    cfg = resolve(config, overrides)
    return run_study(cfg, store_uri=store, show_progress=False).run_uri

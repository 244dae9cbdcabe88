"""Shared fixtures: the `device` parametrisation (CPU always; CUDA when present, else skipped cleanly), and the
benchmark scripts imported by path for their smoke tests."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, _NO_CUDA])]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Run a test on every available device: parity must hold on CPU and on CUDA."""
    return torch.device(request.param)


@pytest.fixture
def load_benchmark(monkeypatch):
    """load_benchmark("bench_ops") imports benchmarks/bench_ops.py (a folder of scripts, not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    return load

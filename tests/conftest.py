"""Shared fixtures: the `device` parametrisation (CPU always; CUDA when present, else skipped cleanly), the real VOC
fixture (../shared/voc-fixture: ten PASCAL VOC images, read in place or copied into tmp_path, never into the
repository), and the benchmark scripts imported by path for their smoke tests."""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
FIXTURE = Path(os.environ.get("FRCNN_EDU_VOC_FIXTURE", REPO.parent / "shared" / "voc-fixture" / "VOCdevkit"))
needs_fixture = pytest.mark.skipif(not (FIXTURE / "VOC2007").is_dir(), reason=f"VOC fixture not found at {FIXTURE}")
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


def copy_fixture(dst: Path) -> Path:
    """A writable copy of the fixture at dst/VOCdevkit (the shared one is read-only); returns dst."""
    shutil.copytree(FIXTURE, dst / "VOCdevkit", copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(dst):
        os.chmod(folder, 0o755)
    return dst


def tree(path: Path) -> dict:
    """Every file under path, as {relative posix path: bytes}: to assert what a command wrote."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def gt(boxes, labels, difficult=None) -> dict:
    """A ground-truth target for the metrics' tests: boxes [G, 4] float32 xyxy, labels [G], difficult [G] if given."""
    target = dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels=torch.tensor(labels))
    if difficult is not None:
        target["difficult"] = torch.tensor(difficult)
    return target


def det(boxes, labels, scores) -> dict:
    """A detection list for the metrics' tests: boxes [D, 4] float32 xyxy, labels [D], scores [D] float32."""
    return dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels=torch.tensor(labels),
                scores=torch.tensor(scores, dtype=torch.float32))

"""benchmarks/gpu_check.sh (`make gpu-check`), the checks that need a GPU, stays runnable: it runs rarely, and on a
lent machine with its own PyTorch (2.11 with torchvision 0.26 and Triton 3.6 when last seen) and without some of
the packages the lock installs, so what can be checked without a GPU is checked here."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_its_test_files_hold_every_cuda_test():
    """It runs pytest -m cuda on a list of files (a file that fails to import there would stop the whole run):
    the list must hold every test marked cuda, and each file on it some."""
    listed = set(re.search(r'^CUDA_TEST_FILES="([^"]*)"', SCRIPT.read_text(), re.M).group(1).split())
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "-p",
                                "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True, text=True).stdout
    files = {line.split("::")[0] for line in collected.splitlines() if "::" in line}
    assert files and files == listed, (files, listed)


def test_its_sections_fit_one_command():
    """A lent machine runs one command for at most 10 minutes: the sections' timeouts add up to less."""
    timeouts = [int(t) for t in re.findall(r"section \w+ (\d+) ", SCRIPT.read_text())]
    assert len(timeouts) == 6 and sum(timeouts) < 600, timeouts


def test_its_compile_section_names_a_test_that_exists():
    """The slow torch.compile test runs last, on its own, by name: the name must still select one test."""
    name = re.search(r"^COMPILE_TEST=(\w+)", SCRIPT.read_text(), re.M).group(1)
    assert f"def test_{name}(" in (ROOT / "tests" / "test_cuda_graphs.py").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs its checks")
def test_without_a_gpu_it_says_so_and_stops(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OUT": str(tmp_path), "PY": sys.executable})
    assert run.returncode == 2 and "sees no CUDA device" in run.stderr, run.stderr
    assert not (tmp_path / "summary.txt").exists()  # no section ran

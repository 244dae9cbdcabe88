"""The package as a student gets it: a wheel, installed outside the checkout, run from a folder of its own.

Builds the wheel from a copy of the package's files (so nothing is built into the checkout), installs it with
--no-deps into a temporary folder placed first on PYTHONPATH, then, from an empty working directory, proves that
the imported package is the wheel's copy and that it generates the built-in dataset, trains the course model and
runs the training command for a few iterations, writing only under the cache folder it was given.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
SMALL = '{"min_size": 128, "max_size": 160}'
IN_THE_WHEEL = """
import json, sys
from pathlib import Path
import frcnn_edu
from frcnn_edu.builtin_dataset import make_builtin_dataset
from frcnn_edu.course import course_model
voc_root = make_builtin_dataset()
model, args = course_model(iterations=2)
print(json.dumps(dict(package=frcnn_edu.__file__, voc_root=str(voc_root), course=args.out)))
"""


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """The wheel's files installed into a fresh folder (like site-packages, without the checkout around it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO / "frcnn_edu", source / "frcnn_edu", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("frcnn_edu-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True,
                   capture_output=True)
    return tmp / "site"


def _run(argv: list[str], site: Path, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "FRCNN_EDU_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(cwd.parent / "mpl"), "HOME": str(cwd.parent / "user")}
    run = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_the_wheel_runs_the_course_from_anywhere(wheel_site, tmp_path):
    home, cwd = tmp_path / "cache", tmp_path / "work"
    cwd.mkdir()
    (tmp_path / "user").mkdir()
    site_before = _files(wheel_site)
    out = json.loads(_run([sys.executable, "-c", IN_THE_WHEEL], wheel_site, home, cwd).stdout.splitlines()[-1])
    assert Path(out["package"]).resolve().is_relative_to(wheel_site.resolve()), out  # the wheel's copy, not REPO
    assert out["voc_root"] == str(home / "builtin" / "VOCdevkit") and out["course"] == str(home / "course")
    train = _run([sys.executable, "-m", "frcnn_edu", "train", "--iterations", "2", "--batch-size", "2", "--warmup",
                  "1", "--eval-images", "4", "--config", SMALL], wheel_site, home, cwd)
    assert json.loads(train.stdout.splitlines()[-1])["iterations"] == 2
    assert f"run folder {home / 'runs' / 'train'}" in train.stderr  # it says where it writes
    assert (wheel_site / "bin" / "frcnn-edu").is_file()  # the installed command
    # written: only the cache folder; not the working directory, the install, nor the user's home
    assert sorted(p.name for p in home.iterdir()) == ["builtin", "course", "runs"]
    assert (home / "runs" / "train" / "metrics.json").is_file()
    assert list(cwd.iterdir()) == [] and list((tmp_path / "user").iterdir()) == []
    assert _files(wheel_site) == site_before

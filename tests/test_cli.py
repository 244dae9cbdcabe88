"""frcnn_edu.cli: one `frcnn-edu` command whose subcommands are the modules' own (same flags, help and errors)."""
import os
import subprocess
import sys

import pytest

from frcnn_edu import cli


@pytest.mark.parametrize("command", ["train", "builtin", "download", "subset"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: frcnn-edu {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, culprit", [
    (["train", "--data", "nope"], "--data must be 'builtin', 'voc' or 'coco', got 'nope'"),
    (["train", "--config", "{bad"], "--config must be a JSON object, got '{bad'"),
    (["subset", "--classes", "kat", "--name", "x"], "'kat' is not a PASCAL VOC class"),
    (["builtin", "--num-train", "0"], "num_train >= 1"),
])
def test_bad_values_are_one_line_with_exit_status_2(argv, culprit, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FRCNN_EDU_HOME", str(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and culprit in err, err


def test_python_dash_m_runs_the_same_command(tmp_path):
    run = subprocess.run([sys.executable, "-m", "frcnn_edu", "download", "voc1999"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 2 and "invalid choice: 'voc1999'" in run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_builtin_says_where_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRCNN_EDU_HOME", str(tmp_path / "home"))
    assert cli.main(["builtin", "--num-train", "2", "--num-test", "1"]) == 0
    where = tmp_path / "home" / "builtin" / "VOCdevkit" / "VOCbuiltin"
    assert str(where) in capsys.readouterr().out and (where / "builtin.json").is_file()


@pytest.mark.parametrize("module, argv, culprit", [
    ("frcnn_edu.train", ["--data", "nope"], "--data must be 'builtin', 'voc' or 'coco', got 'nope'"),
    ("frcnn_edu.builtin_dataset", ["--num-train", "0"], "num_train >= 1"),
])
def test_each_module_run_with_python_dash_m_has_the_same_errors(module, argv, culprit, tmp_path):
    run = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "FRCNN_EDU_HOME": str(tmp_path / "home")})
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and culprit in run.stderr, run.stderr

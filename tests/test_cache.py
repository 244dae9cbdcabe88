"""frcnn_edu.cache: FRCNN_EDU_HOME first, then XDG_CACHE_HOME, then ~/.cache; never the current directory."""
from pathlib import Path

from frcnn_edu.cache import cache_home, cache_path


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("FRCNN_EDU_HOME", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "mine"
    assert cache_path("builtin") == tmp_path / "mine" / "builtin"


def test_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("FRCNN_EDU_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "frcnn_edu"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home" / ".cache" / "frcnn_edu"


def test_nothing_is_created_by_asking(monkeypatch, tmp_path):
    monkeypatch.setenv("FRCNN_EDU_HOME", str(tmp_path / "later"))
    cache_path("course")
    assert not (tmp_path / "later").exists() and Path.cwd() != cache_home()

"""Where frcnn_edu writes when you do not name a folder: one per-user cache folder, never the current directory
or site-packages.

    FRCNN_EDU_HOME                 if set, the folder itself
    $XDG_CACHE_HOME/frcnn_edu      else, where the XDG base-directory convention says caches go
    ~/.cache/frcnn_edu             else (Linux, macOS; %LOCALAPPDATA%\\frcnn_edu on Windows)

Layout inside it: builtin/ (the built-in dataset, VOCdevkit/VOCbuiltin), course/ (the notebooks' shared model),
voc/ (PASCAL VOC downloads and VOCdevkit), runs/ (training runs started without --out). Every command that writes
prints where, and takes a folder argument instead (`make demo` passes the checkout's data/ and runs/).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "FRCNN_EDU_HOME"


def cache_home() -> Path:
    """The cache folder (not created here: the command that writes into it creates what it needs)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "frcnn_edu"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "frcnn_edu"
    return Path.home() / ".cache" / "frcnn_edu"


def cache_path(*parts: str) -> Path:
    """cache_home() / parts: cache_path("builtin") is where the built-in dataset goes by default."""
    return cache_home().joinpath(*parts)

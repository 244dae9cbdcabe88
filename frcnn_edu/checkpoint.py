"""Checkpoints: written atomically, read safely, and enough on their own to rebuild the trained detector.

A checkpoint (run folder's checkpoint.pt, written by train.py) is a dict of tensors, numbers, strings, lists and
dicts only: model and optimizer state, iteration, train_seconds, rng, recipe, config, num_classes, backbone,
classes. It is read with torch.load(weights_only=True), which refuses anything else, so a checkpoint handed over
by someone else cannot run code on your machine (a plain pickle can: torch.load's documentation warns of it).
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from .config import FasterRCNNConfig
from .model import FasterRCNN

KEYS = ("model", "config", "num_classes", "backbone", "classes")  # what rebuilding the detector needs


def save_atomic(state: dict, path: Path) -> None:
    """Write to a temporary file, then rename: a crash mid-write never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict, read with weights_only=True; ValueError naming the file for anything else.

    Raises FileNotFoundError for a missing file, ValueError (one line, naming it) for a file that is not a
    torch checkpoint, one that carries objects other than tensors and plain data (refused before any of them is
    built), or one without the keys a frcnn_edu run writes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; `frcnn-edu train --out RUN` writes RUN/checkpoint.pt")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))  # weights_only met a class or function to call
        if refused:
            raise ValueError(f"{path} is not a safe frcnn_edu checkpoint (refused, nothing in it was run): it "
                             f"carries {refused.group(1)}, not plain data") from None
        raise ValueError(f"{path} is not a torch checkpoint (not a pickle torch.load can read)") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a torch checkpoint ({str(error).splitlines()[0]})") from None
    missing = [k for k in KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a frcnn_edu checkpoint: no {', '.join(missing)}")
    return state


def model_from_checkpoint(state: dict, device: str | torch.device = "cpu") -> FasterRCNN:
    """The trained detector a checkpoint describes (backbone, config, classes, weights), in eval mode."""
    config = FasterRCNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
    model = FasterRCNN(state["num_classes"], state["backbone"], config)
    model.load_state_dict(state["model"])
    return model.to(device).eval()

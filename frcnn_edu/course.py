"""The course's shared model: the tiny detector that notebooks 05-07 inspect, trained once, then loaded.

    model, args = course_model()       # first call: trains 4500 iterations (minutes on a CPU, with a progress bar)

It trains on the built-in dataset with the papers' recipe (flips only) and a fixed seed, so every notebook sees
the same weights; its run folder (checkpoint.pt, losses.csv) is the cache's course/ (cache.py: FRCNN_EDU_HOME
moves it), and a changed recipe or model configuration retrains it. Notebooks: 05, 06, 07.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .builtin_dataset import BUILTIN_CLASSES
from .cache import cache_path
from .checkpoint import load_checkpoint
from .model import FasterRCNN
from .train import Trainer, TrainArgs, build_model
from .training_data import InMemory, load_split


# CPU kernels sum in an order that depends on the thread count, and over thousands of steps a different order is
# a different model: training always uses this many threads, so one machine's course model is every run's there
# (a benchmark that had set one thread earlier in the same process trained a model 0.025 mAP below the CLI's).
TRAINING_THREADS = 2


def course_model(iterations: int = 4500, run_dir: str | Path | None = None,
                 data_root: str | Path | None = None) -> tuple[FasterRCNN, TrainArgs]:
    """The tiny detector the notebooks share: trained once on the built-in dataset, then loaded from its run folder.

    Deterministic (seed 0, no time budget), so every notebook sees the same weights. Trained long enough that the
    papers' claims are tested on a converged network (notebook 06 asserts its VOC07 mAP on the built-in test split
    is at least 0.85). The first call trains for
    `iterations` steps into run_dir (default: cache_path("course")), generating the built-in dataset into
    data_root (default: cache_path("builtin")); later calls load the finished run.
    Returns the model in eval mode and the TrainArgs it was trained with (args.out is the run folder).
    """
    run_dir = Path(run_dir) if run_dir is not None else cache_path("course")
    data_root = Path(data_root) if data_root is not None else cache_path("builtin")
    # the papers' recipe, flips only: notebook 07 measures accuracy against the scales training saw, and zoom
    # crops (the demo's) would show it objects at up to twice their size
    args = TrainArgs(root=str(data_root), iterations=iterations, out=str(run_dir), zoom=0.0)
    torch.manual_seed(args.seed)
    model = build_model(args, len(BUILTIN_CLASSES) + 1)
    trainer = Trainer(args, model, InMemory(load_split(args, args.image_set)))
    checkpoint = run_dir / "checkpoint.pt"
    cached = load_checkpoint(checkpoint) if checkpoint.exists() else {}
    if cached.get("recipe") == trainer.recipe() and cached.get("iteration") == iterations:
        try:
            trainer.load()  # the finished run with this recipe, unless the model configuration changed since
            return model.eval(), args
        except ValueError:
            pass
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), args

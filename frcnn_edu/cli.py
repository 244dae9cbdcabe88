"""The `frcnn-edu` command, installed with the package: one entry point for what the modules run.

    frcnn-edu train ...      train and evaluate a detector            (python -m frcnn_edu.train)
    frcnn-edu builtin ...    generate the built-in dataset            (python -m frcnn_edu.builtin_dataset)
    frcnn-edu download ...   download PASCAL VOC                      (python -m frcnn_edu.voc_download)
    frcnn-edu subset ...     write a class-balanced VOC subset        (python -m frcnn_edu.voc_subset)
    frcnn-edu detect ...     detect objects in your own photos        (python -m frcnn_edu.detect)
    frcnn-edu export ...     export the detector (torch.export, ONNX) (python -m frcnn_edu.export)
    frcnn-edu student ...    student copies of the course notebooks   (python -m frcnn_edu.student)

`python -m frcnn_edu ...` is the same command, and so is `python -m frcnn_edu.<module>`. Each subcommand has
--help. Errors are one line on stderr naming the bad value or file, never a traceback, and the exit status says
what failed (exit_status.py). Without a folder argument, what they write goes into the per-user cache (cache.py).
"""
from __future__ import annotations

import argparse
import sys

from . import builtin_dataset, detect, export, student, train, voc_download, voc_subset
from .exit_status import exit_status

COMMANDS = {  # name -> (module with parser(prog) and command(args), one-line help)
    "train": (train, "train and evaluate a detector"),
    "builtin": (builtin_dataset, "generate the built-in dataset"),
    "download": (voc_download, "download and extract PASCAL VOC"),
    "subset": (voc_subset, "write a class-balanced subset of a few VOC classes"),
    "detect": (detect, "detect objects in your own photos with a trained checkpoint"),
    "export": (export, "export a trained checkpoint with torch.export or to ONNX"),
    "student": (student, "write student copies of the course notebooks (solutions out, outputs cleared)"),
}


def parser(prog: str = "frcnn-edu") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, summary) in COMMANDS.items():
        sub = module.parser(f"{prog} {name}")
        commands.add_parser(name, parents=[sub], add_help=False, help=summary, description=sub.description)
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; returns its exit status (exit_status.py)."""
    args = parser().parse_args(argv)
    return exit_status(COMMANDS[args.command][0].command, args)


if __name__ == "__main__":
    sys.exit(main())

"""The `frcnn-edu` command, installed with the package: one entry point for what the modules run.

    frcnn-edu train ...      train and evaluate a detector            (python -m frcnn_edu.train)
    frcnn-edu builtin ...    generate the built-in dataset            (python -m frcnn_edu.builtin_dataset)
    frcnn-edu download ...   download PASCAL VOC                      (python -m frcnn_edu.voc_download)
    frcnn-edu subset ...     write a class-balanced VOC subset        (python -m frcnn_edu.voc_subset)

`python -m frcnn_edu ...` is the same command. Each subcommand has --help; a bad value is one line on stderr
naming it, with exit status 2. Without a folder argument, what they write goes into the per-user cache (cache.py).
"""
from __future__ import annotations

import argparse
import sys

from . import builtin_dataset, train, voc_download, voc_subset

COMMANDS = {  # name -> (module with parser(prog) and its runner, runner, one-line help)
    "train": (train, train.run_command, "train and evaluate a detector"),
    "builtin": (builtin_dataset, builtin_dataset.run, "generate the built-in dataset"),
    "download": (voc_download, voc_download.run, "download and extract PASCAL VOC"),
    "subset": (voc_subset, voc_subset.run, "write a class-balanced subset of a few VOC classes"),
}


def parser(prog: str = "frcnn-edu") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, _, summary) in COMMANDS.items():
        sub = module.parser(f"{prog} {name}")
        commands.add_parser(name, parents=[sub], add_help=False, help=summary, description=sub.description)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())

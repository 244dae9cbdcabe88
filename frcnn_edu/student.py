"""Student copies of the course notebooks: the exercises' solutions taken out, the outputs cleared.

    frcnn-edu student notebooks/ --out student/          # or: make student

In the course notebooks a student writes a stage of the detector (box IoU, anchors, box coding, anchor labels,
NMS, RoI pooling, RoI sampling) in an exercise cell, and the check cell after it compares the function with the
package's own on hand-made and random cases, saying what is wrong. The solution sits between nbgrader's markers,
one line each, in the exercise cell:

    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

and this command replaces each marked block by `raise NotImplementedError(...)` at the same indentation (what
nbgrader's `generate_assignment` does). Cell metadata follows nbgrader's: an exercise cell has
{"nbgrader": {"solution": true, ...}}, a check cell {"nbgrader": {"grade": true, "points": 1, ...}}, so an
instructor can also hand the notebooks to nbgrader itself. In a student copy exactly the check cells fail until
the exercises are done (tests/test_student.py runs them to prove it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .exit_status import exit_status

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("your code here: replace this line")'


def strip_solutions(source: str, where: str) -> str:
    """A code cell's source with each BEGIN/END SOLUTION block replaced by PLACEHOLDER at the block's indentation.
    ValueError naming `where` for a BEGIN without its END, or an END without its BEGIN."""
    out, inside = [], None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside is not None:
                raise ValueError(f"{where}: line {number} opens a solution inside the one opened at line {inside}")
            inside = number
            out.append(line[: len(line) - len(line.lstrip())] + PLACEHOLDER + "\n")
        elif marker == END:
            if inside is None:
                raise ValueError(f"{where}: line {number} closes a solution that was never opened")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{where}: the solution opened at line {inside} is never closed ({END})")
    return "".join(out)


def student_notebook(notebook: dict, name: str) -> dict:
    """The notebook (nbformat 4 JSON) with its solutions stripped and every output and execution count cleared."""
    cells = []
    for index, cell in enumerate(notebook["cells"]):
        cell = dict(cell)
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            cell.update(source=strip_solutions(source, f"{name} cell {index}"), outputs=[], execution_count=None)
        cells.append(cell)
    return {**notebook, "cells": cells}


def exercises(notebook: dict) -> list[int]:
    """Indices of the cells that hold a solution."""
    return [i for i, cell in enumerate(notebook["cells"])
            if cell["cell_type"] == "code" and BEGIN in "".join(cell["source"])]


def checks(notebook: dict) -> list[int]:
    """Indices of the check cells (nbgrader's graded cells)."""
    return [i for i, cell in enumerate(notebook["cells"]) if cell.get("metadata", {}).get("nbgrader", {}).get("grade")]


def write_student_copies(source: Path, out: Path) -> list[Path]:
    """Student copies of every notebook in `source` (a folder) into `out`; returns the files written."""
    notebooks = sorted(Path(source).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebook (*.ipynb) in {source}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        copy = student_notebook(json.loads(path.read_text()), path.name)
        (out / path.name).write_text(json.dumps(copy, indent=1, ensure_ascii=False) + "\n")
        written.append(out / path.name)
    return written


def parser(prog: str = "python -m frcnn_edu.student") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="?", default="notebooks", help="the course's folder (default: notebooks)")
    p.add_argument("--out", default="student", help="where the copies go (default: student)")
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu student`: writes the copies and lists each with its number of exercises."""
    for path in write_student_copies(Path(args.notebooks), Path(args.out)):
        original = json.loads((Path(args.notebooks) / path.name).read_text())
        print(f"{path}: {len(exercises(original))} exercises, {len(checks(original))} checks")


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))

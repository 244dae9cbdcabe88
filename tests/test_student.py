"""frcnn_edu.student: solutions stripped between nbgrader's markers, outputs cleared, bad markers named; and the
course's student copies, run top to bottom, fail exactly at their check cells and nowhere else (a check that
passes without the exercise done, or a later cell that needs the student's function, would show here)."""
from __future__ import annotations

import json

import pytest
from conftest import REPO

from frcnn_edu import cli
from frcnn_edu.student import PLACEHOLDER, checks, exercises, strip_solutions, student_notebook

NOTEBOOKS = REPO / "notebooks"
# the stages the course has students build (issue 16), by notebook: each is one exercise cell with its check
EXERCISES = {
    "03_fast_rcnn_roi_pooling.ipynb": ["roi projection", "roi max pooling"],
    "04_anchors.ipynb": ["box iou", "anchor generation"],
    "05_region_proposal_network.ipynb": ["box encoding and decoding", "anchor labelling", "greedy nms"],
    "06_fast_rcnn_head.ipynb": ["roi sampling"],
}


def test_a_solution_block_becomes_the_placeholder_at_its_indentation():
    source = "def iou(a, b):\n    ### BEGIN SOLUTION\n    return a & b\n    ### END SOLUTION\n\nprint(1)\n"
    assert strip_solutions(source, "nb") == f"def iou(a, b):\n    {PLACEHOLDER}\n\nprint(1)\n"
    assert strip_solutions("x = 1\n", "nb") == "x = 1\n"


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "nb cell 3: the solution opened at line 1 is never closed"),
    ("x = 1\n### END SOLUTION\n", "nb cell 3: line 2 closes a solution that was never opened"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n", "nb cell 3: line 2 opens a solution inside the one opened at line 1"),
])
def test_unbalanced_markers_are_named(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source, "nb cell 3")


def test_outputs_and_counts_are_cleared_markdown_kept():
    notebook = dict(nbformat=4, nbformat_minor=5, metadata={}, cells=[
        dict(cell_type="markdown", metadata={}, source="### BEGIN SOLUTION is text here", id="a"),
        dict(cell_type="code", metadata={"nbgrader": {"solution": True}}, execution_count=3, id="b",
             source=["def f():\n", "    ### BEGIN SOLUTION\n", "    return 1\n", "    ### END SOLUTION\n"],
             outputs=[dict(output_type="stream", name="stdout", text="1\n")])])
    copy = student_notebook(notebook, "nb")
    assert copy["cells"][0] == notebook["cells"][0]
    assert copy["cells"][1]["outputs"] == [] and copy["cells"][1]["execution_count"] is None
    assert PLACEHOLDER in copy["cells"][1]["source"] and "return 1" not in copy["cells"][1]["source"]
    assert notebook["cells"][1]["execution_count"] == 3  # the original is left alone


def test_the_command_writes_a_copy_per_notebook(tmp_path, capsys):
    assert cli.main(["student", str(NOTEBOOKS), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert "04_anchors.ipynb: 2 exercises, 2 checks" in capsys.readouterr().out
    assert cli.main(["student", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("name", EXERCISES)
def test_each_exercise_has_its_solution_and_check(name):
    notebook = json.loads((NOTEBOOKS / name).read_text())
    solutions, graded = exercises(notebook), checks(notebook)
    assert len(solutions) == len(graded) == len(EXERCISES[name])
    for solution, check in zip(solutions, graded):
        assert solution < check, (solution, check)  # each check right after its exercise
        assert notebook["cells"][solution]["metadata"]["nbgrader"]["solution"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXERCISES)
def test_a_student_copy_fails_exactly_at_its_checks(name, tmp_path):
    """Run top to bottom (errors allowed) with the exercises not done: the failing cells are the check cells,
    each failing with the placeholder's NotImplementedError, and every other cell runs."""
    import nbformat
    from nbclient import NotebookClient

    copy = nbformat.from_dict(student_notebook(json.loads((NOTEBOOKS / name).read_text()), name))
    NotebookClient(copy, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    failed = [i for i, cell in enumerate(copy.cells) if cell.cell_type == "code"
              and any(output.output_type == "error" for output in cell.outputs)]
    assert failed == checks(copy), [(i, [o.get("ename") for o in copy.cells[i].outputs]) for i in failed]
    for i in failed:
        assert [o.ename for o in copy.cells[i].outputs if o.output_type == "error"] == ["NotImplementedError"], i

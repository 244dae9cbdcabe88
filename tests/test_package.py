"""The package as a whole: its exports, its ops free of torchvision, and a layout a wheel can carry (nothing opened
outside the package, no private name shared between modules, every module documented)."""
import ast
import re
from pathlib import Path

import frcnn_edu
from frcnn_edu import ops

PACKAGE = Path(frcnn_edu.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path):
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_ops_are_exported():
    for name in ["box_area", "box_iou", "clip_boxes_to_image", "remove_small_boxes", "nms", "batched_nms",
                 "roi_pool", "roi_align", "RoIPool", "RoIAlign"]:
        assert callable(getattr(ops, name)), name


def test_ops_never_import_torchvision():
    for path in (PACKAGE / "ops").glob("*.py"):
        for node in _imports(path):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.startswith("torchvision") for n in names), f"{path.name} imports torchvision"


def test_no_module_reaches_outside_the_package():
    # a wheel installed into site-packages has no repository around it: parent.parent of a module file is gone
    for path in MODULES:
        for line in path.read_text().splitlines():
            assert not re.search(r"__file__.*(\.parent\.parent|\.parents\[[1-9]\])", line), f"{path}: {line}"


def test_no_private_name_is_imported_from_another_module():
    for path in MODULES:
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and node.level:  # relative: another module of the package
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                where = f"{path.relative_to(PACKAGE)}: from {'.' * node.level}{node.module or ''}"
                # within ops/, the shared checks module is private to the subpackage by name only
                if node.module and node.module.startswith("_") and path.parent.name == "ops":
                    continue
                assert not private, f"{where} import {', '.join(private)}"


def test_every_module_says_what_it_holds():
    for path in MODULES:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.split()) >= 5, f"{path.relative_to(PACKAGE)} has no module docstring"

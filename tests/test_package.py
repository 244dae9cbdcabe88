"""The package imports and exposes its ops without importing torchvision's compiled ops into them."""
import ast
from pathlib import Path

import frcnn_edu
from frcnn_edu import ops

PACKAGE = Path(frcnn_edu.__file__).parent


def test_ops_are_exported():
    for name in ["box_area", "box_iou", "clip_boxes_to_image", "remove_small_boxes", "nms", "batched_nms",
                 "roi_pool", "roi_align", "RoIPool", "RoIAlign"]:
        assert callable(getattr(ops, name)), name


def test_ops_never_import_torchvision():
    for path in (PACKAGE / "ops").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.startswith("torchvision") for n in names), f"{path.name} imports torchvision"

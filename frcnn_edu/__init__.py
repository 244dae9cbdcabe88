"""frcnn_edu: Faster R-CNN built stage by stage, for teaching.

    from frcnn_edu import FasterRCNN, FasterRCNNConfig, ops

Shape letters used in every docstring: N images; H, W image; Hf, Wf feature map; A anchors per location;
M = Hf * Wf * A anchors; K proposals per image; R RoIs in a batch; G ground-truth boxes; L classes including
background (label 0). Frames: `orig px` (the file on disk), `image px` (the rescaled network input), `feature`
(stride-16 cells, feature = image px * spatial_scale). Boxes are xyxy, 0-based, continuous (width = x2 - x1).
"""
from . import ops
from .config import FasterRCNNConfig
from .model import FasterRCNN

__all__ = ["FasterRCNN", "FasterRCNNConfig", "ops"]

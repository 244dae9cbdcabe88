"""frcnn_edu.ops: the detection ops Faster R-CNN is built from, in plain PyTorch, with torchvision.ops' names,
signatures and semantics (values and gradients equal to its compiled kernels; tests/test_ops.py proves it).

Swap either way: `from frcnn_edu import ops` or `from torchvision import ops`. None of these calls torchvision.
The sync-free forms used inside the model (a mask instead of a data-dependent index list) carry their own names:
nms_keep_mask, small_boxes_mask, first_kept.
"""
from .boxes import box_area, box_iou, clip_boxes_to_image, remove_small_boxes, small_boxes_mask
from .nms import batched_nms, first_kept, nms, nms_keep_mask
from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool

__all__ = [
    "box_area", "box_iou", "clip_boxes_to_image", "remove_small_boxes", "small_boxes_mask",
    "nms", "batched_nms", "nms_keep_mask", "first_kept",
    "roi_pool", "RoIPool", "roi_align", "RoIAlign",
]

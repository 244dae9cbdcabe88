"""Box utilities with torchvision.ops semantics: area, IoU, clipping, removing small boxes.

Boxes are [N, 4] xyxy, 0-based continuous (pixel i covers [i, i+1), width = x2 - x1, no +1), in whatever frame
the caller uses (image px or feature cells); these functions do not change frame. Notebook: 01 and 05.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_boxes


def _upcast(boxes: Tensor) -> Tensor:
    # Areas of float16 boxes overflow; torchvision computes them in float32 for the same reason.
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes: [..., 4] float, xyxy, any frame.

    Returns:
        [...] float (float32 at least): (x2 - x1) * (y2 - y1).
    """
    boxes = _upcast(check_boxes("boxes", boxes, batched=True))
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair (Jaccard index), as torchvision.ops.box_iou.

    Args:
        boxes1: [N, 4] float, xyxy. Also accepts leading batch dimensions, [..., N, 4].
        boxes2: [M, 4] float, xyxy, same frame as boxes1 ([..., M, 4] with the same leading dimensions).

    Returns:
        [N, M] (or [..., N, M]) float: inter / (area1 + area2 - inter), computed in that order as torchvision
        does, so the values are bitwise equal to its kernels'. Zero-area pairs give NaN (0 / 0), as there.
    """
    boxes1 = _upcast(check_boxes("boxes1", boxes1, batched=True))
    boxes2 = _upcast(check_boxes("boxes2", boxes2, batched=True))
    area1, area2 = box_area(boxes1), box_area(boxes2)
    a = [c[..., :, None] for c in boxes1.unbind(-1)]  # x1, y1, x2, y2 of boxes1: [..., N, 1] each
    b = [c[..., None, :] for c in boxes2.unbind(-1)]  # [..., 1, M] each
    inter_w = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp_(min=0)  # [..., N, M]
    inter_h = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp_(min=0)
    inter = inter_w.mul_(inter_h)
    return inter / (area1[..., :, None] + area2[..., None, :] - inter)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip boxes so they lie inside an image of size (height, width), as torchvision.ops.clip_boxes_to_image.

    Args:
        boxes: [..., 4] float, xyxy, image px.
        size: (height, width) of the image, Python ints (so no device copy).

    Returns:
        [..., 4], same dtype: x clamped to [0, width], y to [0, height].
    """
    boxes = check_boxes("boxes", boxes, batched=True)
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)  # [..., 2, 2] -> [..., 4]: x1, y1, x2, y2


def small_boxes_mask(boxes: Tensor, min_size: float) -> Tensor:
    """Sync-free form of remove_small_boxes: a mask instead of indices.

    Args:
        boxes: [..., 4] float, xyxy.
        min_size: the smallest width and height kept.

    Returns:
        [...] bool: True where both width and height are >= min_size.
    """
    boxes = check_boxes("boxes", boxes, batched=True)
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return (widths >= min_size) & (heights >= min_size)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose sides are both >= min_size, as torchvision.ops.remove_small_boxes.

    Args:
        boxes: [N, 4] float, xyxy.
        min_size: the smallest width and height kept.

    Returns:
        [K] int64 indices, increasing. The length depends on the data, so on a GPU this reads the mask on the
        host (one sync); small_boxes_mask is the sync-free form used inside the model.
    """
    return torch.nonzero(small_boxes_mask(check_boxes("boxes", boxes), min_size)).flatten()

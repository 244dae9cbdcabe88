"""Box utilities with torchvision.ops semantics: area, IoU, clipping, removing small boxes.

Boxes are [N, 4] xyxy, 0-based continuous (pixel i covers [i, i+1), width = x2 - x1, no +1), in whatever frame
the caller uses (image px or feature cells); these functions do not change frame. Notebook: 01 and 05.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_boxes


_FORMATS = ("xyxy", "xywh", "cxcywh")  # torchvision's axis-aligned box formats (fmt=)


def _upcast(boxes: Tensor) -> Tensor:
    # Products of small dtypes overflow (float16 areas past 65504, int8 ones past 127): float32 or int32 at least,
    # exactly as torchvision's _upcast.
    if boxes.is_floating_point():
        return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    return boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()


def _check_fmt(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS} (rotated formats are not implemented here), got {fmt!r}")


def _corners(boxes: Tensor, fmt: str) -> tuple[Tensor, Tensor]:
    """[..., 4] boxes in fmt -> their top-left and bottom-right corners, [..., 2] each, in the input dtype
    (torchvision's arithmetic for each format: x + w, and cx -/+ w / 2)."""
    if fmt == "xyxy":
        return boxes[..., :2], boxes[..., 2:]
    if fmt == "xywh":
        return boxes[..., :2], boxes[..., :2] + boxes[..., 2:]
    return boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2  # cxcywh


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area of each box, as torchvision.ops.box_area.

    Args:
        boxes: [..., 4], any frame; float or integer. fmt: "xyxy" (x1, y1, x2, y2), "xywh" (x1, y1, w, h) or
            "cxcywh" (centre x, centre y, w, h).

    Returns:
        [...]: (x2 - x1) * (y2 - y1), or w * h. float32 at least for float boxes; int32 at least for integer
        boxes (int64 stays int64), as torchvision.
    """
    boxes = check_boxes("boxes", boxes, batched=True, floating=False)
    _check_fmt(fmt)
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Intersection over union of every pair (Jaccard index), as torchvision.ops.box_iou.

    Args:
        boxes1: [N, 4], float or integer, in fmt (see box_area). Also accepts leading batch dimensions, [..., N, 4].
        boxes2: [M, 4], same frame and fmt as boxes1 ([..., M, 4] with the same leading dimensions).
        fmt: "xyxy", "xywh" or "cxcywh"; torchvision's rotated formats are not implemented.

    Returns:
        [N, M] (or [..., N, M]) float (float32 for integer and float16 boxes): inter / (area1 + area2 - inter),
        computed in torchvision's order of operations (corner differences in the input dtype, then upcast), so
        the values are bitwise equal to its. Zero-area pairs give NaN (0 / 0), as there.
    """
    boxes1 = check_boxes("boxes1", boxes1, batched=True, floating=False)
    boxes2 = check_boxes("boxes2", boxes2, batched=True, floating=False)
    area1, area2 = box_area(boxes1, fmt), box_area(boxes2, fmt)
    (lt1, rb1), (lt2, rb2) = _corners(boxes1, fmt), _corners(boxes2, fmt)
    lt = torch.max(lt1[..., :, None, :], lt2[..., None, :, :])  # [..., N, M, 2]
    rb = torch.min(rb1[..., :, None, :], rb2[..., None, :, :])
    wh = _upcast(rb - lt).clamp_(min=0)  # [..., N, M, 2]: intersection width and height
    inter = wh[..., 0] * wh[..., 1]
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

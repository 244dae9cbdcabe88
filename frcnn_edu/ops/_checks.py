"""Metadata checks shared by the ops: shapes, dtypes, types. They read no tensor values, so they cost nothing
on a GPU (no host sync) and run at every public entry."""
from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_boxes(name: str, boxes: object, *, batched: bool = False) -> Tensor:
    """Check a [N, 4] (or, with batched=True, [..., 4]) floating-point box tensor."""
    boxes = check_tensor(name, boxes)
    if boxes.shape[-1:] != (4,) or (not batched and boxes.dim() != 2):
        expected = "[..., 4]" if batched else "[N, 4]"
        raise ValueError(f"{name} must have shape {expected} (xyxy), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")
    return boxes


def check_scores(name: str, scores: object, num_boxes: int, boxes_device: torch.device) -> Tensor:
    scores = check_tensor(name, scores)
    if scores.shape != (num_boxes,):
        raise ValueError(f"{name} must have shape [{num_boxes}] (one per box), got {tuple(scores.shape)}")
    if scores.device != boxes_device:
        raise ValueError(f"{name} is on {scores.device} but boxes are on {boxes_device}")
    return scores


def as_roi_tensor(boxes: object, input: Tensor) -> Tensor:
    """RoIs as one [K, 5] tensor (batch index, x1, y1, x2, y2), as torchvision's convert_boxes_to_roi_format.

    Accepts the two forms torchvision.ops accepts: a Tensor[K, 5] whose first column is the image index in the
    batch, or a list of Tensor[L, 4], one per image. Checks shapes, dtype and device against `input`.
    """
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            check_tensor(f"boxes[{i}]", b)
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must have shape [L, 4] (xyxy), got {tuple(b.shape)}")
        if len(boxes) == 0:
            return input.new_zeros((0, 5))
        ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]  # one column of image indices each
        boxes = torch.cat([torch.cat(ids), torch.cat(list(boxes))], dim=1)  # [K, 5]
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    else:
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if boxes.dtype != input.dtype:
        raise TypeError(f"boxes must have the dtype of input ({input.dtype}), got {boxes.dtype}")
    if boxes.device != input.device:
        raise ValueError(f"boxes are on {boxes.device} but input is on {input.device}")
    return boxes


def check_feature_map(input: object) -> Tensor:
    input = check_tensor("input", input)
    if input.dim() != 4:
        raise ValueError(f"input must have shape [N, C, H, W], got {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    return input


def pair(output_size: int | tuple[int, int] | list[int], name: str = "output_size") -> tuple[int, int]:
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if len(output_size) != 2 or not all(isinstance(s, int) and s > 0 for s in output_size):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {output_size!r}")
    return int(output_size[0]), int(output_size[1])

"""Metadata checks shared by the ops: shapes, dtypes, types. They read no tensor values, so they cost nothing
on a GPU (no host sync) and run at every public entry.

Our errors follow STYLE.md (ValueError for values and shapes, TypeError for types and dtypes, a message naming the
argument, the value and what was expected). torchvision raises other types for the same mistakes (RuntimeError
from its C++ kernels, AssertionError from its Python checks, IndexError or AttributeError from the first line
that trips), so each of ours is also an instance of torchvision's type: an `except` written for either library
catches it. tests/test_ops.py checks every pair against torchvision.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def error(ours: type[Exception], *torchvision: type[Exception]) -> type[Exception]:
    """The exception class that is `ours` and each of `torchvision`'s types, e.g. error(ValueError, RuntimeError)."""
    bases = (ours,) + tuple(t for t in torchvision if not issubclass(ours, t))
    return bases[0] if len(bases) == 1 else type("".join(b.__name__ for b in bases), bases, {})


# torchvision's nms and roi kernels raise RuntimeError for a bad shape, dtype or device; box_iou's and box_area's
# indexing raises IndexError for a bad shape; roi_pool/roi_align's Python checks assert on the RoIs' layout.
KernelValueError = error(ValueError, RuntimeError)
KernelTypeError = error(TypeError, RuntimeError)
BoxShapeError = error(ValueError, RuntimeError, IndexError)
RoIValueError = error(ValueError, AssertionError)
RoITypeError = error(TypeError, AssertionError)


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):  # torchvision calls a tensor method on it: AttributeError (or TypeError)
        raise error(TypeError, AttributeError)(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_boxes(name: str, boxes: object, *, batched: bool = False, floating: bool = True) -> Tensor:
    """Check a [N, 4] (or, with batched=True, [..., 4]) box tensor, floating-point unless floating=False."""
    boxes = check_tensor(name, boxes)
    if boxes.shape[-1:] != (4,) or (not batched and boxes.dim() != 2):
        expected = "[..., 4]" if batched else "[N, 4]"
        raise BoxShapeError(f"{name} must have shape {expected} (xyxy), got {tuple(boxes.shape)}")
    if floating and not boxes.is_floating_point():
        raise KernelTypeError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")
    return boxes


def check_scores(name: str, scores: object, num_boxes: int, boxes_device: torch.device) -> Tensor:
    scores = check_tensor(name, scores)
    if scores.shape != (num_boxes,):
        raise KernelValueError(f"{name} must have shape [{num_boxes}] (one per box), got {tuple(scores.shape)}")
    if scores.device != boxes_device:
        raise KernelValueError(f"{name} is on {scores.device} but boxes are on {boxes_device}")
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
                raise RoIValueError(f"boxes[{i}] must have shape [L, 4] (xyxy), got {tuple(b.shape)}")
        if len(boxes) == 0:
            return input.new_zeros((0, 5))
        ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]  # one column of image indices each
        boxes = torch.cat([torch.cat(ids), torch.cat(list(boxes))], dim=1)  # [K, 5]
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise RoIValueError(f"boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    else:
        raise RoITypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if boxes.dtype != input.dtype:
        raise KernelTypeError(f"boxes must have the dtype of input ({input.dtype}), got {boxes.dtype}")
    if boxes.device != input.device:
        raise KernelValueError(f"boxes are on {boxes.device} but input is on {input.device}")
    return boxes


def check_feature_map(input: object) -> Tensor:
    input = check_tensor("input", input)
    if input.dim() != 4:
        raise KernelValueError(f"input must have shape [N, C, H, W], got {tuple(input.shape)}")
    if not input.is_floating_point():
        raise KernelTypeError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    return input


def pair(output_size: int | tuple[int, int] | list[int], name: str = "output_size") -> tuple[int, int]:
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if len(output_size) != 2 or not all(isinstance(s, int) and s > 0 for s in output_size):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {output_size!r}")
    return int(output_size[0]), int(output_size[1])

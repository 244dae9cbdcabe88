"""Augmentation: the papers' horizontal flip, and zoom crops for small datasets trained from scratch.

Each takes (image [3, H, W], target dict with boxes [G, 4] xyxy in that image's px) and returns the same pair,
boxes moved with the pixels. The training loop (train.py) draws every random choice from (seed, epoch), so a
resumed run redraws the same; RandomHorizontalFlip takes a generator for use with the VOC reader's transforms.
Notebook: 06_fast_rcnn_head (the demo's recipe).
"""
import math
from typing import Optional

import torch
from torch import Tensor


def hflip(image: Tensor, target: dict) -> tuple:
    """Mirrors image [3, H, W] and target["boxes"] [G, 4] (xyxy, same px): x1' = W - x2, x2' = W - x1.

    In the continuous frame pixel i, covering [i, i+1), goes to W - 1 - i, covering [W - i - 1, W - i): a box
    edge at x goes to W - x, with no -1. Flipping twice gives the input back.
    """
    width = image.shape[-1]
    x1, y1, x2, y2 = target["boxes"].unbind(dim=1)
    boxes = torch.stack([width - x2, y1, width - x1, y2], dim=1)  # [G, 4]
    return image.flip(-1), {**target, "boxes": boxes}


def zoom_crop(image: Tensor, target: dict, draw: Tensor) -> tuple:
    """Crops image [3, H, W] to a window that keeps every object whole: after the model's rescale, a zoom in.

    Not in the papers (flips only): an augmentation for small datasets trained from scratch, where the tiny
    backbone otherwise memorises the 500 built-in images (train mAP 0.95 against test 0.87). The window has
    the image's aspect ratio and 50 to 100% of its side, is widened where needed to hold the union of the
    objects, and sits at a random place that contains that union; boxes follow (px of the crop).

    Args:
        draw: [3] uniform numbers in [0, 1): side, x and y position (drawn by the caller, for reproducibility).
    """
    height, width = image.shape[-2:]
    boxes = target["boxes"]
    side, at_x, at_y = (float(v) for v in draw)
    if len(boxes):
        (ux1, uy1), (ux2, uy2) = boxes[:, :2].amin(dim=0).tolist(), boxes[:, 2:].amax(dim=0).tolist()
    else:  # no object: any window
        ux1 = ux2 = width / 2
        uy1 = uy2 = height / 2
    crop_w = max(width * (0.5 + 0.5 * side), ux2 - ux1)
    crop_h = max(height * (0.5 + 0.5 * side), uy2 - uy1)
    lo_x, hi_x = max(0.0, ux2 - crop_w), min(ux1, width - crop_w)  # left edges that keep the union inside
    lo_y, hi_y = max(0.0, uy2 - crop_h), min(uy1, height - crop_h)
    x1, y1 = math.floor(lo_x + at_x * (hi_x - lo_x)), math.floor(lo_y + at_y * (hi_y - lo_y))
    x2, y2 = min(width, math.ceil(x1 + crop_w)), min(height, math.ceil(y1 + crop_h))
    shift = torch.tensor([x1, y1, x1, y1], dtype=boxes.dtype)
    return image[:, y1:y2, x1:x2], {**target, "boxes": boxes - shift}


class RandomHorizontalFlip:
    """Flips (image, target) with probability p: the papers' only augmentation. Fast R-CNN (arXiv:1504.08083v2
    §2.3, mini-batch sampling): "images are horizontally flipped with probability 0.5. No other data
    augmentation is used"; Faster R-CNN trains the same way (py-faster-rcnn: TRAIN.USE_FLIPPED = True).
    Pass a seeded torch.Generator to make the flips reproducible; DataLoader workers each get a copy of it,
    hence the same sequence each.
    """

    def __init__(self, p: float = 0.5, generator: Optional[torch.Generator] = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def __call__(self, image: Tensor, target: dict) -> tuple:
        if torch.rand((), generator=self.generator).item() < self.p:
            return hflip(image, target)
        return image, target

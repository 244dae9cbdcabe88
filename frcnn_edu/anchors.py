"""Anchors (Faster R-CNN §3.1.1): k reference boxes at every feature-map cell, in image px.

At each of the Hf x Wf cells of the stride-16 feature map the RPN predicts k = A boxes relative to A anchors
centred on that cell's centre in the image: cell (y, x) covers image px [16x, 16x + 16) and its anchors are
centred at ((x + 0.5) * 16, (y + 0.5) * 16). An anchor of size s and aspect ratio r (= h / w) has area s² px,
width s / sqrt(r) and height s * sqrt(r) (FRCNN §3.3: sizes 128, 256, 512 and ratios 0.5, 1, 2, so A = 9).

Order: cell-major, then anchor (row y, column x, then ratio, then size). That matches the RPN's output layout
after `permute(0, 2, 3, 1)`, so anchor i and prediction i refer to the same box. Anchors are not rounded
(torchvision rounds its base anchors to whole pixels and centres them on cell corners; py-faster-rcnn centres
them at (7.5, 7.5) in its 1-based-inclusive convention). Notebook: 04_anchors.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def base_anchors(sizes: tuple[float, ...], ratios: tuple[float, ...], dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> Tensor:
    """The A anchors of one cell, centred on (0, 0).

    Args:
        sizes: anchor sizes s, sqrt(area) in image px.
        ratios: aspect ratios r = h / w.

    Returns:
        [A, 4] xyxy, image px relative to the cell centre, A = len(ratios) * len(sizes), ratio-major.
    """
    rows = []
    for r in ratios:
        for s in sizes:
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            rows.append((-w / 2, -h / 2, w / 2, h / 2))
    return torch.tensor(rows, dtype=dtype, device=device)


def grid_anchors(cell_anchors: Tensor, feature_size: tuple[int, int], stride: int) -> Tensor:
    """Every anchor of every cell: the cell anchors shifted to each cell centre.

    Args:
        cell_anchors: [A, 4] xyxy relative to a cell centre (from base_anchors), image px.
        feature_size: (Hf, Wf) of the feature map.
        stride: image px per feature cell (16).

    Returns:
        [Hf * Wf * A, 4] xyxy, image px, ordered (y, x, a). Same dtype and device as cell_anchors.
    """
    height, width = feature_size
    opts = dict(dtype=cell_anchors.dtype, device=cell_anchors.device)
    centre_y = (torch.arange(height, **opts) + 0.5) * stride  # [Hf]
    centre_x = (torch.arange(width, **opts) + 0.5) * stride  # [Wf]
    cy, cx = torch.meshgrid(centre_y, centre_x, indexing="ij")  # [Hf, Wf] each
    shifts = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)  # [Hf*Wf, 1, 4]
    return (shifts + cell_anchors[None]).reshape(-1, 4)  # [Hf*Wf, A, 4] -> [Hf*Wf*A, 4]


class AnchorGenerator(torch.nn.Module):
    """Anchors for a feature map, with the cell anchors kept as a buffer (moved with .to(device), no copy per call).

    Args:
        sizes, ratios: as in base_anchors. stride: image px per feature cell.
    """

    def __init__(self, sizes: tuple[float, ...], ratios: tuple[float, ...], stride: int):
        super().__init__()
        self.stride = stride
        self.register_buffer("cell_anchors", base_anchors(sizes, ratios), persistent=False)

    @property
    def num_anchors(self) -> int:
        return self.cell_anchors.shape[0]

    def forward(self, feature_size: tuple[int, int]) -> Tensor:
        """[Hf * Wf * A, 4] anchors, xyxy, image px, for a feature map of size (Hf, Wf)."""
        return grid_anchors(self.cell_anchors, feature_size, self.stride)

"""Box regression targets: the (t_x, t_y, t_w, t_h) parametrisation of Faster R-CNN eq. 2 (from R-CNN, appendix C).

The RPN regresses anchors onto ground truth with it, and the Fast R-CNN head regresses proposals onto ground
truth with it. Both use the same two functions; only the weights differ. Notebook: 05_region_proposal_network.
Boxes are xyxy, image px; width = x2 - x1 (no +1), centre = x1 + width / 2.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# torchvision's BoxCoder clamps t_w, t_h here before exp: a box may grow at most 1000/16 = 62.5 times,
# which keeps exp() finite early in training when the regressor still outputs large values.
BBOX_CLAMP = math.log(1000.0 / 16)


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


def encode_boxes(reference: Tensor, proposals: Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Offsets that move each proposal onto its reference box (Faster R-CNN eq. 2).

    Args:
        reference: [..., 4] float, xyxy, image px. The boxes to reach, g (the matched ground truth).
        proposals: [..., 4] float, xyxy, image px. The boxes to start from, p (anchors or RoIs); element-wise
            paired with reference. Widths and heights must be > 0.
        weights: (wx, wy, ww, wh) as in torchvision's BoxCoder: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for
            the head (py-faster-rcnn's 1 / (0.1, 0.1, 0.2, 0.2)). Python floats, so no device copy.

    Returns:
        [..., 4]: t_x = wx (x_g - x_p) / w_p, t_y = wy (y_g - y_p) / h_p, t_w = ww log(w_g / w_p),
        t_h = wh log(h_g / h_p). decode_boxes(out, proposals, weights) inverts it.
    """
    wx, wy, ww, wh = weights
    gx, gy, gw, gh = _centre_size(reference)
    px, py, pw, ph = _centre_size(proposals)
    return torch.stack(
        (wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=-1
    )


def decode_boxes(deltas: Tensor, proposals: Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Apply regression offsets to boxes: the inverse of encode_boxes (Faster R-CNN eq. 2 solved for g).

    Args:
        deltas: [..., 4] float (t_x, t_y, t_w, t_h), as from the RPN or the head.
        proposals: [..., 4] float, xyxy, image px; broadcastable against deltas.
        weights: as in encode_boxes.

    Returns:
        [..., 4] float, xyxy, image px: centre x_p + w_p t_x / wx, size w_p exp(t_w / ww), and likewise in y.
        t_w and t_h are clamped at log(1000 / 16) first (see BBOX_CLAMP).
    """
    wx, wy, ww, wh = weights
    px, py, pw, ph = _centre_size(proposals)
    cx = px + deltas[..., 0] / wx * pw
    cy = py + deltas[..., 1] / wy * ph
    w = pw * torch.exp((deltas[..., 2] / ww).clamp(max=BBOX_CLAMP))
    h = ph * torch.exp((deltas[..., 3] / wh).clamp(max=BBOX_CLAMP))
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)

"""The proposal layer (FRCNN §3.3): RPN outputs -> a fixed number of object proposals per image.

Per image: decode the deltas onto the anchors, clip to the image, drop boxes smaller than min_size, keep the
pre_nms_top_n highest-scoring, NMS at IoU 0.7, keep the first post_nms_top_n survivors. Proposals are in image
px (the rescaled input, the frame of the anchors); the head projects them onto the feature map (x / 16).
Shapes are fixed: [N, K, 4] with a `valid` mask where fewer than K survive. Notebook: 05_region_proposal_network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .box_coder import decode_boxes
from .ops import clip_boxes_to_image, first_kept, small_boxes_mask


@dataclass
class Proposals:
    """boxes: [N, K, 4] xyxy, image px. scores: [N, K] objectness logits. valid: [N, K] bool."""

    boxes: Tensor
    scores: Tensor
    valid: Tensor


def decode_and_clip(anchors: Tensor, deltas: Tensor, image_sizes: list[tuple[int, int]]) -> Tensor:
    """Anchors moved by the RPN's deltas, clipped to each image.

    Args:
        anchors: [M, 4] xyxy, image px. deltas: [N, M, 4]. image_sizes: N (h, w).

    Returns:
        [N, M, 4] xyxy, image px, inside each image.
    """
    boxes = decode_boxes(deltas, anchors[None])  # [N, M, 4]
    return torch.stack([clip_boxes_to_image(b, size) for b, size in zip(boxes, image_sizes)])


def generate_proposals(anchors: Tensor, objectness: Tensor, deltas: Tensor, image_sizes: list[tuple[int, int]],
                       pre_nms_top_n: int, post_nms_top_n: int, nms_thresh: float, min_size: float) -> Proposals:
    """The proposal layer (FRCNN §3.3), batched over images, with fixed shapes.

    Args:
        anchors: [M, 4] xyxy, image px. objectness: [N, M] logits. deltas: [N, M, 4].
        image_sizes: N (h, w) of the rescaled images. The other arguments: see FasterRCNNConfig.

    Returns:
        Proposals with K = post_nms_top_n, sorted by decreasing score; not differentiable (the RPN is
        trained by its own loss; FRCNN §3.2 treats proposals as fixed inputs to the head).
    """
    boxes = decode_and_clip(anchors, deltas.detach(), image_sizes)  # [N, M, 4]
    scores = objectness.detach().masked_fill(~small_boxes_mask(boxes, min_size), float("-inf"))
    scores, order = scores.topk(min(pre_nms_top_n, scores.shape[1]), dim=1)  # [N, P], sorted
    boxes = boxes.gather(1, order[:, :, None].expand(-1, -1, 4))  # [N, P, 4]
    keep, found = first_kept(boxes, scores > float("-inf"), nms_thresh, post_nms_top_n)  # [N, K]
    return Proposals(boxes.gather(1, keep[:, :, None].expand(-1, -1, 4)), scores.gather(1, keep), found)

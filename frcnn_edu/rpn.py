"""The Region Proposal Network (FRCNN §3.1): a small conv net on the shared feature map, its training targets
and its loss.

At each of the Hf x Wf cells a 3x3 conv (512 channels for VGG-16) feeds two sibling 1x1 convs: A objectness
logits ("object vs not object", one sigmoid logit per anchor, equivalent to the paper's 2-way softmax) and 4A
box deltas (t_x, t_y, t_w, t_h) relative to the cell's A anchors (FRCNN §3.1, Fig. 3). Training labels each
anchor positive (IoU >= 0.7 with a ground truth, or the best anchor of some ground truth), negative (IoU < 0.3
with all) or ignored, samples 256 per image with at most half positives, and applies a classification loss to
the sampled anchors and a smooth-L1 regression loss to the sampled positives (FRCNN §3.1.2, eq. 1).
Everything runs with fixed shapes: labels and samples are masks over all anchors; nothing reads the device.
Notebook: 05_region_proposal_network.

Shapes: N images, M = Hf * Wf * A anchors, G ground-truth boxes per image (padded; `gt_valid` marks real ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_coder import encode_boxes
from .ops import box_iou
from .sampling import sample_balanced

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs for objectness and box deltas (FRCNN §3.1, Fig. 3).

    Args:
        in_channels: C of the shared feature map. num_anchors: A per cell. mid_channels: the 3x3 conv's width
            (512 for VGG-16, FRCNN §3.1; defaults to in_channels).
    """

    def __init__(self, in_channels: int, num_anchors: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or in_channels
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # FRCNN §3.1.3: N(0, 0.01²), bias 0
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Objectness and deltas for every anchor.

        Args:
            features: [N, C, Hf, Wf], feature cells.

        Returns:
            objectness: [N, Hf*Wf*A] logits. deltas: [N, Hf*Wf*A, 4] (t_x, t_y, t_w, t_h). Both in the anchors'
            order (y, x, a), see anchors.py.
        """
        x = F.relu(self.conv(features))
        num, _, height, width = x.shape
        objectness = self.cls_logits(x).permute(0, 2, 3, 1).reshape(num, -1)  # [N, A, Hf, Wf] -> [N, Hf*Wf*A]
        deltas = self.bbox_pred(x).view(num, -1, 4, height, width)  # [N, 4A, Hf, Wf] -> [N, A, 4, Hf, Wf]
        deltas = deltas.permute(0, 3, 4, 1, 2).reshape(num, -1, 4)  # -> [N, Hf, Wf, A, 4] -> [N, Hf*Wf*A, 4]
        return objectness, deltas


def inside_image(anchors: Tensor, image_sizes: list[tuple[int, int]]) -> Tensor:
    """Which anchors lie wholly inside each image (py-faster-rcnn's allowed_border = 0).

    Args:
        anchors: [M, 4] xyxy, image px. image_sizes: N (h, w) Python ints.

    Returns:
        [N, M] bool.
    """
    rows = []
    for height, width in image_sizes:
        rows.append((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= width) & (anchors[:, 3] <= height))
    return torch.stack(rows)


def label_anchors(anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, usable: Tensor,
                  fg_iou_thresh: float, bg_iou_thresh: float) -> tuple[Tensor, Tensor]:
    """Anchor labels for RPN training (FRCNN §3.1.2).

    Positive: IoU >= fg_iou_thresh with some ground truth, or the highest-IoU anchor(s) of some ground truth
    (so every object gets an anchor even when none reaches 0.7). Negative: IoU < bg_iou_thresh with every
    ground truth. Everything else, and every anchor that is not `usable`, is ignored.

    Args:
        anchors: [M, 4] xyxy, image px.
        gt_boxes: [N, G, 4] xyxy, image px (padding rows arbitrary but of positive size).
        gt_valid: [N, G] bool, real ground-truth rows.
        usable: [N, M] bool, anchors allowed in training (e.g. inside the image, FRCNN §3.3).

    Returns:
        labels: [N, M] int64 in {1 positive, 0 negative, -1 ignored}.
        matched: [N, M] int64, the index in G of each anchor's highest-IoU ground truth.
    """
    iou = box_iou(anchors.expand(gt_boxes.shape[0], -1, -1), gt_boxes)  # [N, M, G]
    iou = iou.masked_fill(~gt_valid[:, None, :], 0.0)  # padding overlaps nothing: an empty image is all negatives
    iou = iou.masked_fill(~usable[:, :, None], -1.0)  # unusable anchors fall in no band: ignored
    best_iou, matched = iou.max(dim=2)  # [N, M]
    labels = torch.full_like(matched, IGNORED)
    labels = torch.where((best_iou >= 0) & (best_iou < bg_iou_thresh), NEGATIVE, labels)
    labels = torch.where(best_iou >= fg_iou_thresh, POSITIVE, labels)
    best_for_gt = iou.max(dim=1, keepdim=True).values  # [N, 1, G]
    # > 0: a ground truth that no usable anchor overlaps has no "best anchor"
    is_best = ((iou == best_for_gt) & (best_for_gt > 0)).any(dim=2)  # [N, M]
    labels = torch.where(is_best, POSITIVE, labels)
    return labels, matched


def sample_anchors(labels: Tensor, batch_size_per_image: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """The anchors the RPN trains on (FRCNN §3.1.3): 256 per image, up to half positive, at random.

    Args:
        labels: [N, M] int64 from label_anchors (1 positive, 0 negative, -1 ignored: never sampled).

    Returns:
        positive, negative: [N, M] bool masks (sampling.sample_balanced).
    """
    return sample_balanced(labels == POSITIVE, labels == NEGATIVE, batch_size_per_image, positive_fraction)


@dataclass
class AnchorTargets:
    """What the RPN's loss needs: labels [N, M] int64 (1, 0, -1), the sampled positive and negative [N, M] bool,
    and each anchor's matched ground-truth box [N, M, 4] xyxy image px (meaningful for positives)."""

    labels: Tensor
    positive: Tensor
    negative: Tensor
    matched_boxes: Tensor


def anchor_targets(anchors: Tensor, image_sizes: list[tuple[int, int]], gt_boxes: Tensor, gt_valid: Tensor,
                   fg_iou_thresh: float, bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                   ignore_cross_boundary: bool) -> AnchorTargets:
    """The RPN's training targets (FRCNN §3.1.2, §3.3): label every anchor, sample 256, match ground truths.

    Args:
        anchors: [M, 4] xyxy, image px. image_sizes: N (h, w) Python ints.
        gt_boxes: [N, G, 4] xyxy, image px (padded). gt_valid: [N, G] bool.
        ignore_cross_boundary: train only on anchors wholly inside the image (FRCNN §3.3).
    """
    num = gt_boxes.shape[0]
    usable = (inside_image(anchors, image_sizes) if ignore_cross_boundary
              else torch.ones(num, anchors.shape[0], dtype=torch.bool, device=anchors.device))  # [N, M]
    labels, matched = label_anchors(anchors, gt_boxes, gt_valid, usable, fg_iou_thresh, bg_iou_thresh)
    positive, negative = sample_anchors(labels, batch_size_per_image, positive_fraction)
    matched_boxes = gt_boxes.gather(1, matched[:, :, None].expand(-1, -1, 4))  # [N, M, 4]
    return AnchorTargets(labels, positive, negative, matched_boxes)


def rpn_loss(objectness: Tensor, deltas: Tensor, anchors: Tensor, matched_boxes: Tensor, positive: Tensor,
             negative: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """The RPN's two losses (FRCNN eq. 1), both normalised by the number of sampled anchors.

    Args:
        objectness: [N, M] logits. deltas: [N, M, 4]. anchors: [M, 4] xyxy image px.
        matched_boxes: [N, M, 4] each anchor's ground truth, image px. positive, negative: [N, M] bool samples.
        beta: smooth-L1 transition point.

    Returns:
        loss_objectness: binary cross-entropy averaged over the sampled anchors (N_cls = 256 per image).
        loss_rpn_box_reg: smooth L1 on the positives' (t_x, t_y, t_w, t_h), summed and divided by the same count
            (torchvision's normalisation; the paper's lambda = 10 with N_reg ~ 2400 weighs it about the same).
    """
    sampled = positive | negative
    count = sampled.sum().clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(objectness, positive.to(objectness.dtype), reduction="none")
    loss_objectness = torch.where(sampled, bce, 0.0).sum() / count
    targets = encode_boxes(matched_boxes, anchors.expand_as(matched_boxes))  # [N, M, 4]
    box = F.smooth_l1_loss(deltas, targets, beta=beta, reduction="none").sum(dim=2)  # [N, M]
    loss_box = torch.where(positive, box, 0.0).sum() / count
    return loss_objectness, loss_box

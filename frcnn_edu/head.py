"""The Fast R-CNN head (Fast R-CNN §2): RoI projection and pooling, FC layers, classifier and box regressor,
their training targets and loss, and post-processing into detections.

Each RoI (a proposal, in image px) is projected onto the shared feature map by spatial_scale = 1/16 and pooled
to a fixed 7x7 grid (Fast §2.1), so the FC layers accept RoIs of any size from images of any size. Training
samples 128 RoIs per image, 25% foreground (IoU >= 0.5 with a ground truth), the rest background (IoU in
[0.1, 0.5)), with the ground-truth boxes added to the proposals (Fast §2.3). The loss is cross-entropy over
L classes plus smooth L1 on the true class's box deltas (Fast eq. 1). At test time: softmax, per-class box
decoding, clipping, a score threshold, per-class NMS, and the top 100 (Fast §3 / py-faster-rcnn test.py).
Notebook: 03_fast_rcnn_roi_pooling and 06_fast_rcnn_head.

Shapes: N images, K proposals per image, G ground truths (padded), B sampled RoIs per image, R = N * B (or N * K)
RoIs in the batch, L classes including background (label 0), D the head's feature size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_coder import decode_boxes, encode_boxes
from .ops import box_iou, clip_boxes_to_image, first_kept, roi_align, roi_pool, small_boxes_mask
from .sampling import sample_balanced


class FastRCNNPredictor(nn.Module):
    """The two sibling outputs (Fast §2): L class scores and 4L class-specific box deltas.

    Initialised as Fast §2.3 says: N(0, 0.01²) for the classifier, N(0, 0.001²) for the regressor, zero bias.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[R, D] -> class_logits [R, L], box_deltas [R, L, 4]."""
        return self.cls_score(x), self.bbox_pred(x).view(x.shape[0], -1, 4)


def pool_rois(features: Tensor, rois: Tensor, output_size: int, spatial_scale: float, method: str,
              sampling_ratio: int) -> Tensor:
    """RoI projection and pooling (Fast §2.1): image-px RoIs -> fixed-size feature grids.

    Args:
        features: [N, C, Hf, Wf], feature cells. rois: [N, B, 4] xyxy, image px.
        spatial_scale: image px -> feature cells (1 / stride). method: "pool" (RoI max pooling) or "align".

    Returns:
        [N * B, C, S, S] with S = output_size; RoI n * B + b comes from image n.
    """
    features = features.to(rois.dtype)  # under bfloat16 autocast the map is bf16; RoI coordinates need float32
    per_image = list(rois.unbind(0))  # torchvision's list form: image n's RoIs, [B, 4] each
    if method == "align":
        return roi_align(features, per_image, output_size, spatial_scale, sampling_ratio)
    return roi_pool(features, per_image, output_size, spatial_scale)


def label_proposals(proposals: Tensor, valid: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
                    fg_iou_thresh: float, bg_iou_hi: float, bg_iou_lo: float) -> tuple[Tensor, Tensor]:
    """Class targets of RoIs (Fast §2.3): the matched class at IoU >= fg, 0 (background) in [lo, hi), else -1.

    Args:
        proposals: [N, P, 4] xyxy, image px. valid: [N, P] bool.
        gt_boxes: [N, G, 4]. gt_labels: [N, G] int64 in 1..L-1. gt_valid: [N, G] bool.

    Returns:
        labels: [N, P] int64: class id, 0 background, -1 not used. matched: [N, P] index into G.
    """
    iou = box_iou(proposals, gt_boxes).masked_fill(~gt_valid[:, None, :], -1.0)  # [N, P, G]
    best_iou, matched = iou.max(dim=2)  # [N, P]
    labels = torch.full_like(matched, -1)
    labels = torch.where((best_iou >= bg_iou_lo) & (best_iou < bg_iou_hi), 0, labels)
    labels = torch.where(best_iou >= fg_iou_thresh, gt_labels.gather(1, matched), labels)
    return torch.where(valid, labels, -1), matched


def sample_rois(labels: Tensor, batch_size_per_image: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """Up to B RoIs per image, at most a `positive_fraction` foreground, at random (Fast §2.3).

    Args:
        labels: [N, P] int64 from label_proposals.

    Returns:
        index: [N, B] int64 into P, foreground first. used: [N, B] bool, False for empty slots.
    """
    num = labels.shape[1]
    keys = torch.rand(labels.shape, device=labels.device)
    foreground, background = sample_balanced(labels > 0, labels == 0, batch_size_per_image, positive_fraction, keys)
    chosen = foreground | background  # [N, P], at most B per row
    # compact the chosen RoIs into B slots: foreground first, then background, then unused
    priority = chosen.to(keys.dtype) * 2 + (labels > 0).to(keys.dtype) + keys * 0.5  # chosen > unchosen
    used, index = priority.topk(min(batch_size_per_image, num), dim=1)
    return index, used >= 2


@dataclass
class RoITargets:
    """What the head trains on: rois [N, B, 4] xyxy image px, their labels [N, B] int64 (0 background),
    used [N, B] bool (False for empty slots) and box_targets [N, B, 4], the encoded matched ground truth."""

    rois: Tensor
    labels: Tensor
    used: Tensor
    box_targets: Tensor


def roi_targets(proposals: Tensor, valid: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
                fg_iou_thresh: float, bg_iou_hi: float, bg_iou_lo: float, batch_size_per_image: int,
                positive_fraction: float, weights: tuple[float, float, float, float]) -> RoITargets:
    """The head's training RoIs and targets (Fast §2.3): label the proposals, sample B, encode their targets.

    Args:
        proposals: [N, K, 4] xyxy, image px. valid: [N, K] bool.
        gt_boxes: [N, G, 4] image px (padded). gt_labels: [N, G] int64. gt_valid: [N, G] bool.
        weights: the box coder's (wx, wy, ww, wh), (10, 10, 5, 5) for the head.
    """
    # Fast §2.3 / torchvision: the ground-truth boxes join the proposals as RoIs
    candidates = torch.cat([proposals, gt_boxes], dim=1)  # [N, K+G, 4]
    candidate_valid = torch.cat([valid, gt_valid], dim=1)
    labels, matched = label_proposals(candidates, candidate_valid, gt_boxes, gt_labels, gt_valid,
                                      fg_iou_thresh, bg_iou_hi, bg_iou_lo)
    index, used = sample_rois(labels, batch_size_per_image, positive_fraction)  # [N, B]
    rois = candidates.gather(1, index[:, :, None].expand(-1, -1, 4))  # [N, B, 4]
    matched_boxes = gt_boxes.gather(1, matched.gather(1, index)[:, :, None].expand(-1, -1, 4))
    return RoITargets(rois, labels.gather(1, index), used, encode_boxes(matched_boxes, rois, weights))


def head_loss(class_logits: Tensor, box_deltas: Tensor, labels: Tensor, used: Tensor, box_targets: Tensor,
              beta: float) -> tuple[Tensor, Tensor]:
    """Fast R-CNN multi-task loss (Fast eq. 1), both terms averaged over the sampled RoIs.

    Args:
        class_logits: [R, L]. box_deltas: [R, L, 4]. labels: [R] int64 (0 background). used: [R] bool.
        box_targets: [R, 4] encoded ground truth of each RoI (weights (10, 10, 5, 5)).

    Returns:
        loss_classifier (cross-entropy), loss_box_reg (smooth L1 on the true class's deltas, foreground only).
    """
    count = used.sum().clamp(min=1)
    ce = F.cross_entropy(class_logits, labels.clamp(min=0), reduction="none")
    loss_classifier = torch.where(used, ce, 0.0).sum() / count
    true_class = box_deltas.gather(1, labels.clamp(min=0)[:, None, None].expand(-1, 1, 4)).squeeze(1)  # [R, 4]
    box = F.smooth_l1_loss(true_class, box_targets, beta=beta, reduction="none").sum(dim=1)
    loss_box_reg = torch.where(used & (labels > 0), box, 0.0).sum() / count
    return loss_classifier, loss_box_reg


@dataclass
class Detections:
    """Fixed-size detections per image: boxes [N, D, 4] xyxy image px, scores [N, D], labels [N, D] int64
    (1..L-1), valid [N, D] bool (D = detections_per_img)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    valid: Tensor


def postprocess_detections(class_logits: Tensor, box_deltas: Tensor, proposals: Tensor, valid: Tensor,
                           image_sizes: list[tuple[int, int]], weights: tuple[float, float, float, float],
                           score_thresh: float, nms_thresh: float, detections_per_img: int,
                           min_size: float) -> Detections:
    """Scores and boxes -> the top detections per image (Fast §3: per-class NMS), with fixed shapes.

    Args:
        class_logits: [N*K, L]. box_deltas: [N*K, L, 4]. proposals: [N, K, 4] image px. valid: [N, K].

    Returns:
        Detections, sorted by decreasing score; the same set torchvision's postprocess_detections returns
        (score > thresh, size >= min_size, NMS within each class, top detections_per_img of the union).
    """
    num, per_image = proposals.shape[:2]
    num_classes = class_logits.shape[1]
    scores = F.softmax(class_logits, dim=1).view(num, per_image, num_classes)[:, :, 1:]  # [N, K, L-1]
    boxes = decode_boxes(box_deltas.view(num, per_image, num_classes, 4)[:, :, 1:], proposals[:, :, None], weights)
    boxes = torch.stack([clip_boxes_to_image(b, size) for b, size in zip(boxes, image_sizes)])  # [N, K, L-1, 4]
    keep = valid[:, :, None] & (scores > score_thresh) & small_boxes_mask(boxes, min_size)  # [N, K, L-1]
    # one NMS problem per (image, class), each sorted by score: [N*(L-1), K]
    scores = scores.masked_fill(~keep, float("-inf")).permute(0, 2, 1).reshape(-1, per_image)
    boxes = boxes.permute(0, 2, 1, 3).reshape(-1, per_image, 4)
    scores, order = scores.sort(dim=1, descending=True, stable=True)
    boxes = boxes.gather(1, order[:, :, None].expand(-1, -1, 4))
    per_class = min(detections_per_img, per_image)
    kept, found = first_kept(boxes, scores > float("-inf"), nms_thresh, per_class)  # [N*(L-1), k]
    scores = scores.gather(1, kept).masked_fill(~found, float("-inf")).view(num, -1)  # [N, (L-1)*k]
    boxes = boxes.gather(1, kept[:, :, None].expand(-1, -1, 4)).view(num, -1, 4)
    labels = torch.arange(1, num_classes, device=boxes.device).repeat_interleave(per_class).expand(num, -1)
    scores, best = scores.topk(min(detections_per_img, scores.shape[1]), dim=1)  # [N, D]
    return Detections(boxes.gather(1, best[:, :, None].expand(-1, -1, 4)), scores, labels.gather(1, best),
                      scores > float("-inf"))

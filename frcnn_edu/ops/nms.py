"""Non-maximum suppression with torchvision.ops semantics, in plain tensor operations and without host syncs.

Greedy NMS (Fast R-CNN §2.2 uses it per class; Faster R-CNN §3.3 on proposals): visit the boxes by decreasing
score; keep a box unless a box kept before it overlaps it with IoU > iou_threshold (strictly greater: IoU equal
to the threshold does not suppress). Notebook: 05_region_proposal_network.

How it runs with no host round-trip:
1. One stable sort by score, then the suppression matrix S[i, j] = (j after i) and IoU(i, j) > threshold,
   computed at once for all pairs with box_iou: the same arithmetic as torchvision's kernels, so the same bits.
2. The greedy pass. Whether box j survives depends only on the boxes before it, so a single pass in sorted
   order decides it: keep[j] = not any(S[i, j] and keep[i] for i < j). `greedy_keep` walks that pass as a
   Python loop whose length is the number of boxes (a shape, never a tensor value), each step one vectorised
   update of the row of the box just decided. It is the iterative Cluster-NMS of Zheng et al. 2020 (which
   provably converges to greedy NMS) with its fixed point reached in sorted order, one box per step, so the
   number of steps is known in advance and no convergence test has to be read on the host.
3. `nms_keep_mask` returns that mask (fixed size: sync-free); `nms` turns it into indices, whose count depends
   on the data, so that last step reads the mask on the host, exactly once, as torchvision's NMS does too.
`first_kept` serves the proposal layer: it needs only the first k survivors, so it picks the best alive box k
times (k steps instead of one per box) and returns fixed-size indices with a validity mask.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._checks import check_boxes, check_scores, check_tensor
from .boxes import box_iou


def _iou_above(iou: Tensor, iou_threshold: float) -> Tensor:
    """iou > iou_threshold, with the threshold compared as a float64 as torchvision's kernels compare it.

    torch would round a Python float to float32 before comparing a float32 tensor with it; when that rounding
    goes up, an IoU equal to the rounded value would wrongly survive. The largest float32 not above the
    threshold gives the exact float64 comparison instead.
    """
    if iou.dtype == torch.float64:
        return iou > iou_threshold
    threshold = np.float32(iou_threshold)
    if float(threshold) > iou_threshold:
        threshold = np.nextafter(threshold, np.float32(-np.inf))
    return iou > float(threshold)


def suppression_matrix(boxes: Tensor, iou_threshold: float, groups: Tensor | None = None) -> Tensor:
    """S[i, j]: box i, if kept, suppresses box j. Boxes must already be in visiting (decreasing score) order.

    Args:
        boxes: [..., P, 4] float, xyxy, sorted by decreasing score.
        iou_threshold: suppress when IoU > iou_threshold.
        groups: optional [..., P] int; boxes of different groups (classes) never suppress each other.

    Returns:
        [..., P, P] bool, strictly upper triangular (only earlier boxes suppress later ones).
    """
    num = boxes.shape[-2]
    later = torch.ones(num, num, dtype=torch.bool, device=boxes.device).triu_(diagonal=1)  # [P, P]
    suppress = _iou_above(box_iou(boxes, boxes), iou_threshold) & later
    if groups is not None:
        suppress &= groups[..., :, None] == groups[..., None, :]
    return suppress


def greedy_keep(suppress: Tensor) -> Tensor:
    """The greedy pass over a suppression matrix: which boxes survive NMS.

    Args:
        suppress: [..., P, P] bool, strictly upper triangular, from suppression_matrix.

    Returns:
        [..., P] bool, in the same (sorted) order. One loop step per box: a static count, no host read.
    """
    keep = torch.ones(suppress.shape[:-1], dtype=torch.bool, device=suppress.device)  # [..., P]
    not_suppress = ~suppress
    for i in range(suppress.shape[-1]):
        # keep[i] is final here: only rows < i can touch it. A kept row clears the boxes it overlaps.
        keep &= not_suppress[..., i, :] | ~keep[..., i : i + 1]
    return keep


def _sorted_keep(boxes: Tensor, scores: Tensor, iou_threshold: float, groups: Tensor | None) -> tuple[Tensor, Tensor]:
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep input order, as torchvision's CPU
    sorted_groups = None if groups is None else groups[order]
    keep_sorted = greedy_keep(suppression_matrix(boxes[order], iou_threshold, sorted_groups))
    return order, keep_sorted


def nms_keep_mask(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Sync-free NMS: a keep mask in the input order instead of indices. nms(...) == mask's indices by score.

    Args:
        boxes: [N, 4] float, xyxy, any frame.
        scores: [N] float, same device.
        iou_threshold: discard boxes that overlap a kept, higher-scoring box with IoU > iou_threshold.

    Returns:
        [N] bool.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted = _sorted_keep(boxes, scores, iou_threshold, None)
    return torch.zeros_like(keep_sorted).scatter_(0, order, keep_sorted)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as torchvision.ops.nms.

    Args:
        boxes: [N, 4] float, xyxy with 0 <= x1 < x2 and 0 <= y1 < y2, any frame.
        scores: [N] float, same device.
        iou_threshold: discard boxes that overlap a kept, higher-scoring box with IoU > iou_threshold.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score (equal scores: lower index first, as
        torchvision's CPU kernel; its CUDA kernel may order ties differently). The count K depends on the data:
        one host read at the very end. nms_keep_mask is the sync-free form.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted = _sorted_keep(boxes, scores, iou_threshold, None)
    return order[keep_sorted]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category, as torchvision.ops.batched_nms: boxes of different idxs never suppress each other.

    torchvision shifts each category's boxes apart (its "coordinate trick") or loops over categories; here the
    suppression matrix simply ignores pairs of different categories, which equals its per-category loop.

    Args:
        boxes: [N, 4] float, xyxy.
        scores: [N] float.
        idxs: [N] int, the category (class, or image) of each box.
        iou_threshold: as in nms.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score. One host read at the end, as nms.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    idxs = check_scores("idxs", idxs, boxes.shape[0], boxes.device)
    order, keep_sorted = _sorted_keep(boxes, scores, iou_threshold, idxs)
    return order[keep_sorted]


def first_kept(boxes: Tensor, valid: Tensor, iou_threshold: float, k: int) -> tuple[Tensor, Tensor]:
    """The first k boxes that greedy NMS keeps, for batches of boxes already sorted by decreasing score.

    Picks the best alive box, removes it and every alive box it overlaps with IoU > iou_threshold, k times:
    exactly greedy NMS stopped after k survivors, in k vectorised steps with fixed shapes (no host read).

    Args:
        boxes: [B, P, 4] float, xyxy, sorted by decreasing score along P.
        valid: [B, P] bool; invalid boxes neither survive nor suppress.
        iou_threshold: as in nms.
        k: how many survivors to return per row (a Python int).

    Returns:
        indices: [B, k] int64 into P, in order of survival (so by decreasing score).
        found: [B, k] bool, False where fewer than k boxes survived (those indices are meaningless).
    """
    check_boxes("boxes", boxes, batched=True)
    check_tensor("valid", valid)
    suppress = _iou_above(box_iou(boxes, boxes), iou_threshold)  # [B, P, P]
    num = boxes.shape[1]
    later_first = torch.arange(num, 0, -1, device=boxes.device)  # [P]: larger for earlier (better) boxes
    alive = valid.clone()
    indices, found = [], []
    for _ in range(k):
        best = torch.where(alive, later_first, 0).argmax(dim=1, keepdim=True)  # [B, 1] first alive box
        found.append(alive.gather(1, best))  # [B, 1]
        indices.append(best)
        row = suppress.gather(1, best[:, :, None].expand(-1, 1, num)).squeeze(1)  # [B, P]
        alive &= ~row
        alive.scatter_(1, best, False)  # a zero-area box has IoU NaN with itself: remove it explicitly
    if k == 0:
        empty = torch.zeros(boxes.shape[0], 0, dtype=torch.int64, device=boxes.device)
        return empty, empty.bool()
    return torch.cat(indices, dim=1), torch.cat(found, dim=1)

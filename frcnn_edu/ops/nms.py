"""Non-maximum suppression with torchvision.ops semantics, in plain tensor operations and without host syncs.

Greedy NMS (Fast R-CNN §2.2 uses it per class; Faster R-CNN §3.3 on proposals): visit the boxes by decreasing
score; keep a box unless a box kept before it overlaps it with IoU > iou_threshold (strictly greater: IoU equal
to the threshold does not suppress). Notebook: 05_region_proposal_network.

How it runs with no host round-trip:
1. One stable sort by score. Box i, if kept, suppresses box j when i comes first and IoU(i, j) > threshold,
   computed with box_iou: the same arithmetic as torchvision's kernels, so the same bits.
2. The greedy pass, in blocks of _BLOCK boxes. Whether box j survives depends only on the boxes before it, so
   a single pass in sorted order decides it: keep[j] = not any(S[i, j] and keep[i] for i < j). For each block,
   the IoU of every earlier box with the block's boxes (tile by tile: half of the pairs, never the whole
   [P, P] matrix) tells which block boxes an already-kept box overlaps; then a Python loop over the block's
   positions (a shape, never a tensor value) settles the block box by box, each step one tiny in-place
   update. This is the iterative Cluster-NMS of Zheng et al. 2020 (which provably converges to greedy NMS)
   with its fixed point reached in sorted order, so the number of steps is known in advance and no
   convergence test has to be read on the host.
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
from .boxes import _upcast, box_area, box_iou


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


_BLOCK = 256  # boxes settled together; their IoU with earlier boxes is computed _TILE earlier boxes at a time
# One tile for proposal-sized inputs (<= 16384 boxes): few, large ops are fastest on CPU (each op has a fixed
# cost, and on a busy machine a multi-threaded op waits for its slowest thread); the tiles only bound memory
# ([16384, 256] float temporaries, 16 MB) for larger inputs.
_TILE = 16384


def suppresses(earlier: Tensor, later: Tensor, iou_threshold: float,
               earlier_groups: Tensor | None = None, later_groups: Tensor | None = None) -> Tensor:
    """S[i, j]: box earlier[i], if kept, suppresses box later[j] (IoU > threshold, same group).

    Args:
        earlier: [E, 4] float, xyxy. later: [L, 4] float, xyxy, same frame.
        iou_threshold: suppress when IoU > iou_threshold.
        earlier_groups, later_groups: optional [E] and [L] int; boxes of different groups (classes) never
            suppress each other.

    Returns:
        [E, L] bool. It ignores the visiting order: the caller passes boxes that come first as `earlier`.
    """
    suppress = _iou_above(box_iou(earlier, later), iou_threshold)  # [E, L]
    if earlier_groups is not None:
        suppress &= earlier_groups[:, None] == later_groups[None, :]
    return suppress


def _settle_block(suppress: Tensor, keep: Tensor) -> Tensor:
    """Greedy NMS inside one block, box by box: a kept box removes the later block boxes it suppresses.

    Args:
        suppress: [b, b] bool, strictly upper triangular. keep: [b] bool, the boxes no earlier block removed;
            updated in place and returned.
    """
    rows, decided = suppress.unbind(0), keep.unbind(0)  # views: decided[i] sees the in-place updates below
    for i in range(len(rows)):
        keep.masked_fill_(rows[i] & decided[i], False)  # keep[i] is final here: only rows < i can touch it
    return keep


def greedy_keep(boxes: Tensor, iou_threshold: float, groups: Tensor | None = None) -> Tensor:
    """Which boxes survive greedy NMS, for boxes already in visiting (decreasing score) order.

    Args:
        boxes: [P, 4] float, xyxy, sorted by decreasing score.
        iou_threshold: suppress when IoU > iou_threshold.
        groups: optional [P] int, as in suppresses.

    Returns:
        [P] bool, in the same (sorted) order. One loop step per box: a static count, no host read.
    """
    num = boxes.shape[0]
    group = (lambda a, b: None) if groups is None else (lambda a, b: groups[a:b])
    keep = torch.ones(num, dtype=torch.bool, device=boxes.device)  # [P]
    for start in range(0, num, _BLOCK):
        stop = min(start + _BLOCK, num)
        block, block_groups = boxes[start:stop], group(start, stop)  # [b, 4], [b]
        # Earlier blocks are settled, so a block box that one of their kept boxes overlaps is gone for good.
        removed = torch.zeros(stop - start, dtype=torch.bool, device=boxes.device)  # [b]
        for tile in range(0, start, _TILE):
            end = min(tile + _TILE, start)
            overlap = suppresses(boxes[tile:end], block, iou_threshold, group(tile, end), block_groups)  # [t, b]
            removed |= (overlap & keep[tile:end, None]).any(dim=0)
        within = suppresses(block, block, iou_threshold, block_groups, block_groups).triu_(diagonal=1)  # [b, b]
        keep[start:stop] = _settle_block(within, ~removed)  # only an earlier box suppresses a later one
    return keep


def _sorted_keep(boxes: Tensor, scores: Tensor, iou_threshold: float, groups: Tensor | None) -> tuple[Tensor, Tensor]:
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep input order, as torchvision's CPU
    sorted_groups = None if groups is None else groups[order]
    keep_sorted = greedy_keep(boxes[order], iou_threshold, sorted_groups)
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

    torchvision shifts each category's boxes apart (its "coordinate trick") or loops over categories; here
    `suppresses` simply ignores pairs of different categories, which equals its per-category loop. The cost
    is that of one NMS over all N boxes (every pair is looked at), where torchvision's loop looks only at
    pairs within a category: a loop over categories would need their count on the host.

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


_DENSE_PAIRS = 1 << 22  # first_kept builds the whole IoU matrix up to 4M pairs (16 MB in float32)


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
    num = boxes.shape[1]
    if k == 0:
        empty = torch.zeros(boxes.shape[0], 0, dtype=torch.int64, device=boxes.device)
        return empty, empty.bool()
    # Small P: all pairs' IoU at once, then a row lookup per step. Large P (the paper's 12000 pre-NMS boxes):
    # only the k picked rows are ever needed, so compute each one when its box is picked (k * P pairs, not P²).
    dense = boxes.shape[0] * num * num <= _DENSE_PAIRS
    if dense:  # a picked box also removes itself (the diagonal), even one of zero area (IoU NaN with itself)
        eye = torch.eye(num, dtype=torch.bool, device=boxes.device)
        keep_row = (~(_iou_above(box_iou(boxes, boxes), iou_threshold) | eye)).int()  # [B, P, P]
    else:
        overlaps = _IoURow(boxes)
    # int32, not bool: argmax then finds the first alive box, the best one, in one op (first maximum on ties).
    # Not uint8 either: torch.compile's CPU code for argmax of an all-zero uint8 row returns garbage (torch 2.15).
    alive = valid.int()  # [B, P]
    indices, found = [], []
    for _ in range(k):
        best = alive.argmax(dim=1, keepdim=True)  # [B, 1]; 0 when nothing is alive ...
        found.append(alive.gather(1, best).bool())  # ... which this records
        indices.append(best)
        if dense:
            alive &= keep_row.gather(1, best[:, :, None].expand(-1, 1, num)).squeeze(1)  # [B, P]
        else:
            alive.masked_fill_(_iou_above(overlaps(best), iou_threshold), 0).scatter_(1, best, 0)
    return torch.cat(indices, dim=1), torch.cat(found, dim=1)


class _IoURow:
    """IoU of one box per row with every box of that row, box_iou's arithmetic (same bits) with the corners and
    areas split out once: first_kept asks for k such rows, and this halves the elementwise ops of each.

    boxes: [B, P, 4] float, xyxy. Calling with index [B, 1] (a box per row) returns its IoU row, [B, P].
    """

    def __init__(self, boxes: Tensor):
        self.boxes = boxes = _upcast(boxes)
        self.x1, self.y1, self.x2, self.y2 = boxes.unbind(-1)  # [B, P] each
        self.area = box_area(boxes)  # [B, P]

    def __call__(self, index: Tensor) -> Tensor:
        x1, y1, x2, y2 = self.boxes.gather(1, index[:, :, None].expand(-1, 1, 4)).unbind(-1)  # [B, 1] each
        inter = torch.minimum(x2, self.x2).sub_(torch.maximum(x1, self.x1)).clamp_(min=0)  # widths
        inter.mul_(torch.minimum(y2, self.y2).sub_(torch.maximum(y1, self.y1)).clamp_(min=0))  # times heights
        return inter.div_((self.area.gather(1, index) + self.area).sub_(inter))

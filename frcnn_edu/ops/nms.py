"""Non-maximum suppression with torchvision.ops semantics, in a few tensor operations and without host syncs.

Greedy NMS (Fast R-CNN §2.2 uses it per class; Faster R-CNN §3.3 on proposals): visit the boxes by decreasing
score; keep a box unless a box kept before it overlaps it with IoU > iou_threshold (strictly greater: IoU equal
to the threshold does not suppress). Notebook: 05_region_proposal_network.

How it runs in a number of operations set by the shapes, never by how many boxes are kept:
1. One stable sort by score (ties keep input order, as torchvision's CPU kernel).
2. The boxes go in blocks of _BLOCK. Who suppresses whom (S[i, j] = 1 when box i comes before box j and their
   IoU is above the threshold), for a block's pairs and for the pairs (box kept before the block, block box),
   comes from a handful of large operations with box_iou's arithmetic: the same bits as torchvision's.
3. The boxes kept in earlier blocks are final: one matrix product removes the block boxes they overlap.
4. The block's own decisions are sequential (each box waits for every box before it), so they are one operator,
   frcnn_edu::settle (ops/settle.py): one Triton kernel launch on CUDA, a fixed-point iteration elsewhere; exact
   for any input.
A block meets only the first k boxes kept before it (k: the survivors asked for), which bounds the work at
P * (k + _BLOCK) pairs. Blocks trade operations (a GPU's cost) against arithmetic (a CPU's), so each device has
its own size.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._checks import check_boxes, check_scores, check_tensor
from .boxes import box_area
from .settle import settle


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


# Boxes settled together. Fewer, larger blocks mean fewer operations (the GPU's cost: one launch each, about 20
# per block) but more arithmetic (the CPU's: a block's pairs cost P x block). So each device gets its own.
_BLOCK = 2048  # on a GPU (and any device but the CPU): 12000 proposals in 6 blocks
# Measured on a trained RPN's proposals (the demo model, four VOC photos at 600 x 1000, one CPU thread), ms per
# image for 6000 -> 300 and 12000 -> 2000: blocks of 128: 17 and 116; 256: 17 and 123; 1024: 52 and 187;
# torchvision.ops.nms on the same boxes: 48 and 193.
_BLOCK_CPU = 256

# batched_nms's per-category rows on CPU, where pairs cost and launches are cheap: block b meets only the boxes
# before it, so small blocks skip most of the lower triangle. 6000 boxes, IoU 0.3, one thread, 20 categories:
# 64: 9.5 ms, 256: 17.8, 2048: 24.0; 2 categories: 54, 65, 237 ms. On a GPU, _BLOCK (fewer launches).
_CATEGORY_BLOCK_CPU = 64


def _block_size(device: torch.device) -> int:
    """Boxes per block on this device: few large blocks on a GPU, smaller ones on a CPU."""
    return _BLOCK_CPU if device.type == "cpu" else _BLOCK


def _corners(boxes: Tensor) -> Tensor:
    """[B, P, 4] xyxy -> [5, B, P]: x1, y1, x2, y2 and area (float32 at least, as box_area), one row each."""
    area = box_area(boxes)  # float32 for float16 input, whose areas overflow
    return torch.cat([boxes.to(area.dtype), area[..., None]], dim=-1).permute(2, 0, 1)


def _suppression(rows: Tensor, cols: Tensor, iou_threshold: float) -> Tensor:
    """S[b, i, j] = 1 where IoU(rows[:, b, i], cols[:, b, j]) > iou_threshold, else 0.

    Args:
        rows: [5, B, R], cols: [5, B, C], from _corners.

    Returns:
        [B, R, C] float32 of 0 and 1 (float: it feeds matrix products). The IoU is box_iou's arithmetic, in its
        order of operations, so the comparisons are those of torchvision's kernels.
    """
    r, c = rows[..., None].unbind(0), cols[:, :, None, :].unbind(0)  # [B, R, 1] and [B, 1, C] each
    inter = (torch.minimum(r[2], c[2]) - torch.maximum(r[0], c[0])).clamp_(min=0)  # widths
    inter.mul_((torch.minimum(r[3], c[3]) - torch.maximum(r[1], c[1])).clamp_(min=0))  # times heights
    return _iou_above(inter.div_((r[4] + c[4]).sub_(inter)), iou_threshold).float()


def greedy_keep(boxes: Tensor, alive: Tensor, iou_threshold: float, k: int, block: int) -> Tensor:
    """Greedy NMS for rows of boxes already sorted by decreasing score, block by block (module docstring).

    Args:
        boxes: [B, P, 4] float, xyxy, sorted by decreasing score along P.
        alive: [B, P] bool; dead boxes neither survive nor suppress.
        iou_threshold: suppress when IoU > iou_threshold.
        k: survivors needed per row (P for all). A block meets only the first k boxes kept before it: later
            ones cannot change the first k survivors, and this bounds the work at P * (k + block) pairs.
        block: boxes per block (_block_size).

    Returns:
        [B, P] bool, greedy NMS's decisions, exact up to the k-th survivor of each row (all of them for k = P).
    """
    with torch.autocast(boxes.device.type, enabled=False):  # 0/1 products: autocast would only add casts
        return _greedy_keep(boxes, alive, iou_threshold, k, block)


def _greedy_keep(boxes: Tensor, alive: Tensor, iou_threshold: float, k: int, block: int) -> Tensor:
    num_rows, num = boxes.shape[:2]
    corners = _corners(boxes)  # [5, B, P]
    alive = alive.float()[:, None, :]  # [B, 1, P]
    rank = torch.arange(num, 0, -1, device=boxes.device, dtype=torch.float32)  # [P]: P .. 1, earliest largest
    keep = torch.zeros(num_rows, 1, num, device=boxes.device)  # [B, 1, P] float 0/1
    for start in range(0, num, block):
        stop, earlier = min(start + block, num), min(k, start)
        cols = corners[:, :, start:stop]  # [5, B, w]
        if earlier:  # rows: the first `earlier` boxes kept before the block (weight 0: fewer were kept), then cols
            weight, index = (keep[:, 0, :start] * rank[:start]).topk(earlier, dim=1)  # [B, e]
            cols = torch.cat([corners.gather(2, index.expand(5, -1, -1)), cols], dim=2)  # [5, B, e + w]
        suppress = _suppression(cols, cols[:, :, earlier:], iou_threshold).triu_(1 - earlier)  # row i before col j
        block_alive = alive[:, :, start:stop]  # [B, 1, w]
        if earlier:  # remove what the earlier kept boxes suppress: they are final
            block_alive = torch.baddbmm(block_alive, weight.clamp(max=1)[:, None], suppress[:, :earlier],
                                        alpha=-1).clamp_(min=0)
        keep[:, :, start:stop] = settle(suppress[:, earlier:], block_alive)
    return keep[:, 0] > 0


def _first_true(mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Positions of the first k True entries of each row, with fixed shapes (a top-k, no host read).

    Args:
        mask: [B, P] bool. k: a Python int.

    Returns:
        indices: [B, k] int64, increasing; found: [B, k] bool, False past the row's last True (index 0 there).
    """
    num = mask.shape[1]
    rank = torch.arange(num, 0, -1, device=mask.device)  # [P]: earliest position largest
    weight, indices = (mask * rank).topk(min(k, num), dim=1)  # [B, min(k, P)]
    if k > num:  # fewer boxes than survivors asked for: pad with not-found entries
        weight, indices = (torch.nn.functional.pad(t, (0, k - num)) for t in (weight, indices))
    return indices.masked_fill_(weight == 0, 0), weight > 0


def _sorted_keep(boxes: Tensor, scores: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """Sort by score, then greedy_keep: order [N], and keep [N] bool in that order."""
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep input order, as torchvision's CPU
    num = boxes.shape[0]
    alive = torch.ones(1, num, dtype=torch.bool, device=boxes.device)
    keep = greedy_keep(boxes[order][None], alive, iou_threshold, num, _block_size(boxes.device))
    return order, keep[0]


def nms_keep_mask(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Sync-free NMS: a keep mask in the input order instead of indices. nms(...) == mask's indices by score.

    Args:
        boxes: [N, 4] float, xyxy, any frame.
        scores: [N] float, same device.
        iou_threshold: discard boxes that overlap a kept, higher-scoring box with IoU > iou_threshold.

    Returns:
        [N] bool, True for the boxes torchvision.ops.nms keeps.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted = _sorted_keep(boxes, scores, iou_threshold)
    return torch.zeros_like(keep_sorted).scatter_(0, order, keep_sorted)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as torchvision.ops.nms.

    Args:
        boxes: [N, 4] float, xyxy with 0 <= x1 < x2 and 0 <= y1 < y2, any frame.
        scores: [N] float, same device.
        iou_threshold: discard boxes that overlap a kept, higher-scoring box with IoU > iou_threshold.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score (equal scores: lower index first, as
        torchvision's CPU kernel; its CUDA kernel may order ties differently). The count K depends on the data,
        so this reads the result on the host at the end; nms_keep_mask is the sync-free form.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted = _sorted_keep(boxes, scores, iou_threshold)
    return order[keep_sorted]


def _per_category_keep(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS within each category, all categories in one greedy_keep: one padded row per category.

    Args:
        boxes: [N, 4] float, xyxy. scores: [N] float. idxs: [N] int, the category of each box. N > 0.

    Returns:
        [N] bool keep mask in the input order. Reads the number of categories and the largest one on the host
        (the padded batch's shape).
    """
    num = boxes.shape[0]
    by_score = torch.sort(scores, descending=True, stable=True).indices  # [N], ties keep input order
    order = by_score[torch.sort(idxs[by_score], stable=True).indices]  # [N]: by category, then by score
    category = idxs[order]
    starts = torch.ones(num, dtype=torch.bool, device=boxes.device)  # [N]: True at a category's first box
    starts[1:] = category[1:] != category[:-1]
    row = starts.cumsum(0) - 1  # [N]: the row of each box's category
    index = torch.arange(num, device=boxes.device)
    column = index - (index * starts).cummax(0).values  # [N]: place within its category, by decreasing score
    num_rows, width = torch.stack([row[-1], column.max()]).add(1).tolist()  # host read: the batch's shape
    batch = boxes.new_zeros(num_rows, width, 4)  # [B, P, 4]; padding is dead: neither kept nor suppressing
    batch[row, column] = boxes[order]
    alive = torch.zeros(num_rows, width, dtype=torch.bool, device=boxes.device)
    alive[row, column] = True
    block = _CATEGORY_BLOCK_CPU if boxes.device.type == "cpu" else _BLOCK
    keep = greedy_keep(batch, alive, iou_threshold, width, block)
    return torch.zeros_like(starts).scatter_(0, order, keep[row, column])


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category, as torchvision.ops.batched_nms: boxes of different idxs never suppress each other.

    Two paths, chosen as torchvision chooses (up to 1000 boxes on CPU, 25000 on a GPU; per category above):
    - few boxes: torchvision's coordinate trick. Shift each category's boxes by idxs * (max coordinate + 1), so
      boxes of different categories lie apart and never overlap, then run one nms. The shift rounds coordinates
      far from the origin in float32, so a pair whose IoU is within a few ulps of the threshold may be decided
      differently from per-category NMS; torchvision's trick rounds the same way.
    - more boxes: per-category NMS without a loop over categories. Sorted by category, then by score, each
      category becomes one row of a padded [categories, largest category, 4] batch, settled by greedy_keep in
      one pass (module docstring); the work is categories x largest^2 pairs, not N x kept as with the trick.
      Reading the batch's shape is one host read more than nms.

    Args:
        boxes: [N, 4] float, xyxy.
        scores: [N] float.
        idxs: [N] int, the category (class, or image) of each box.
        iou_threshold: as in nms.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score; equal scores: lower index first, as nms
        (torchvision's per-category path sorts its result unstably, so it may order equal scores otherwise).
        Empty boxes give an empty result whatever the other arguments, as torchvision.
    """
    if check_tensor("boxes", boxes).numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    idxs = check_scores("idxs", idxs, boxes.shape[0], boxes.device)
    if boxes.numel() <= (4000 if boxes.device.type == "cpu" else 100_000):  # torchvision's threshold for the trick
        offsets = idxs.to(boxes) * (boxes.max() + 1)  # [N]: categories lie max + 1 apart
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep = _per_category_keep(boxes, scores, idxs, iou_threshold)  # [N] bool
    by_score = torch.sort(scores, descending=True, stable=True).indices  # ties keep input order, as nms
    return by_score[keep[by_score]]


def first_kept(boxes: Tensor, valid: Tensor, iou_threshold: float, k: int) -> tuple[Tensor, Tensor]:
    """The first k boxes that greedy NMS keeps, for batches of boxes already sorted by decreasing score.

    greedy_keep settles the rows' keep decisions in a number of operations set by the shapes (about 25 per block
    of _BLOCK boxes), never by k; a top-k then gathers the first k kept positions.

    Args:
        boxes: [B, P, 4] float, xyxy, sorted by decreasing score along P.
        valid: [B, P] bool; invalid boxes neither survive nor suppress.
        iou_threshold: as in nms.
        k: how many survivors to return per row (a Python int).

    Returns:
        indices: [B, k] int64 into P, in order of survival (so by decreasing score).
        found: [B, k] bool, False where fewer than k boxes survived (those indices are meaningless).
        Exactly greedy NMS's first k survivors, as torchvision.ops.nms's first k.
    """
    check_boxes("boxes", boxes, batched=True)
    check_tensor("valid", valid)
    if boxes.dim() != 3:
        raise ValueError(f"boxes must have shape [B, P, 4] (xyxy), got {tuple(boxes.shape)}")
    return _first_true(greedy_keep(boxes, valid, iou_threshold, k, _block_size(boxes.device)), k)

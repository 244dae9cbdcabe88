"""Non-maximum suppression with torchvision.ops semantics, in a few tensor operations and without host syncs.

Greedy NMS (Fast R-CNN §2.2 uses it per class; Faster R-CNN §3.3 on proposals): visit the boxes by decreasing
score; keep a box unless a box kept before it overlaps it with IoU > iou_threshold (strictly greater: IoU equal
to the threshold does not suppress). Notebook: 05_region_proposal_network.

Why it is sequential. Sort the boxes by score and let S[i, j] = 1 when box i comes before box j and
IoU(i, j) > iou_threshold. Greedy NMS is the recurrence

    keep[j] = alive[j] and not any(S[i, j] and keep[i] for i < j),

so each box waits for the fate of every box before it. Written as a loop over boxes (or over the k picks of the
proposal layer), each step is a few operations, and on a GPU every operation is a kernel launch: the paper's
12000 proposals made tens of thousands. No trick removes the wait for every input: a chain of boxes, each
overlapping the next, needs as many steps as it is long.

How few operations settle it anyway (the fixed point of Cluster-NMS, Zheng et al. 2020, arXiv:2005.03572):
1. One stable sort by score (ties keep input order, as torchvision's CPU kernel).
2. The boxes go in blocks of _BLOCK. S for a block's pairs, and for the pairs (box kept before the block, block
   box), comes from a handful of large operations, with box_iou's arithmetic: the same bits as torchvision's.
3. Inside a block, the recurrence is applied to all boxes at once, over and over:
       x_0 = alive,   x_{t+1}[j] = alive[j] and not any_i(S[i, j] and x_t[i]),
   one matrix-vector product per step (x_t @ S counts the kept boxes that suppress j). Two facts make it exact:
   (a) after t steps the first t boxes are final: box 0 has nobody before it, and box j's new value reads only
       boxes before j, which (by induction) were final one step earlier;
   (b) if x_t and x_{t-1} agree on the first u boxes, those u are greedy NMS's answer: there x is a fixed point
       of the recurrence, and the fixed point is unique (again by induction on j: keep[0] is forced, then
       keep[1], ...). So a step that changes nothing proves the whole block exact.
   Real boxes settle in a few steps, since overlaps form short chains around each object. Measured on proposals
   decoded around the paper's anchor grid (IoU 0.3 to 0.7): at most 9 steps for blocks of 1024 boxes, 14 for
   4096. _ITERATIONS steps are run, a number fixed in advance, so no convergence test is read on the host.
4. Before a block settles, the boxes kept in earlier blocks (final, so chains across blocks cost nothing) remove
   the block boxes they overlap: one more product.
So the operation count depends on P / _BLOCK, never on how many boxes are kept.
When a block has not settled (a chain deeper than _ITERATIONS: adversarial input), only its boxes before the
first unsettled one are certain (fact b). The sync-free forms return that certain part: first_kept reports
found=False from there on and nms_keep_mask drops those boxes, so they never return a box greedy NMS would drop.
nms and batched_nms read their result on the host anyway; they also read a `settled` flag and, if it is False,
redo the work with blocks of _EXACT_BLOCK boxes and as many steps, exact for any input (fact a).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._checks import check_boxes, check_scores, check_tensor
from .boxes import box_area


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


# Boxes settled together. Fewer, larger blocks mean fewer operations (the GPU's cost: one launch each) but more
# arithmetic (the CPU's: the settling steps cost P x block each). So each device gets its own: measured for
# 12000 -> 2000 proposals, 1024: 891 ops, 0.32 s (one CPU thread); 2048: 453, 0.52 s; 3072: 307, 0.94 s.
_BLOCK = 2048  # on a GPU (and any device but the CPU)
_BLOCK_CPU = 256  # 6000 -> 300 proposals: 16 ms, against 175 ms with 2048 (one thread; torchvision 19 ms)

_ITERATIONS = 16  # settling steps per block; realistic proposals need at most 14 (module docstring)
# batched_nms's per-category rows on CPU, where pairs cost and launches are cheap: block b meets only the boxes
# before it, so small blocks skip most of the lower triangle. 6000 boxes, IoU 0.3, one thread, 20 categories:
# 64: 9.5 ms, 256: 17.8, 2048: 24.0; 2 categories: 54, 65, 237 ms. On a GPU, _BLOCK (fewer launches).
_CATEGORY_BLOCK_CPU = 64
_EXACT_BLOCK = 64  # nms's fallback: blocks of 64 boxes with 64 steps each, exact for any input (fact a)


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


def _settle(suppress: Tensor, alive: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Greedy NMS inside one block by fixed-point iteration: x <- alive and not any_i(S[i, j] and x[i]).

    Args:
        suppress: [B, W, W] float 0/1, S[i, j] for block boxes i before j (strictly upper triangular).
        alive: [B, 1, W] float 0/1, the block boxes that no earlier block removed.
        iterations: steps to run; the first t boxes are final after t steps (module docstring, fact a).

    Returns:
        x: [B, 1, W] float 0/1, the keep decisions after the last step.
        changed: [B, 1, W] bool, where the last step changed x. All False: x is a fixed point, so greedy NMS's
            answer (fact b); otherwise the boxes before the first True are still final.
    """
    x = previous = alive
    for _ in range(iterations):
        # x @ S counts the kept boxes that suppress each box: alive minus that count, floored at 0, is 1 exactly
        # for an alive box that no kept box suppresses. One fused matrix product and one clamp per step.
        previous, x = x, torch.baddbmm(alive, x, suppress, alpha=-1).clamp_(min=0)
    return x, x != previous


def greedy_keep(boxes: Tensor, alive: Tensor, iou_threshold: float, k: int, block: int,
                iterations: int) -> tuple[Tensor, Tensor]:
    """Greedy NMS for rows of boxes already sorted by decreasing score, block by block (module docstring).

    Args:
        boxes: [B, P, 4] float, xyxy, sorted by decreasing score along P.
        alive: [B, P] bool; dead boxes neither survive nor suppress.
        iou_threshold: suppress when IoU > iou_threshold.
        k: survivors needed per row (P for all). A block meets only the first k boxes kept before it: later
            ones cannot change the first k survivors, and this bounds the work at P * (k + block) pairs.
        block, iterations: boxes per block and settling steps per block (_BLOCK and _ITERATIONS);
            iterations >= block is exact for any input.

    Returns:
        keep: [B, P] bool, greedy NMS's decisions (exact up to the k-th survivor), False from the first box
            that did not settle on (a deeper chain than `iterations`): never a wrong True.
        settled: [B] bool, True where every block settled, so keep is complete.
    """
    with torch.autocast(boxes.device.type, enabled=False):  # 0/1 products: autocast would only add casts
        return _greedy_keep(boxes, alive, iou_threshold, k, block, iterations)


def _greedy_keep(boxes: Tensor, alive: Tensor, iou_threshold: float, k: int, block: int,
                 iterations: int) -> tuple[Tensor, Tensor]:
    num_rows, num = boxes.shape[:2]
    corners = _corners(boxes)  # [5, B, P]
    alive = alive.float()[:, None, :]  # [B, 1, P]
    rank = torch.arange(num, 0, -1, device=boxes.device, dtype=torch.float32)  # [P]: P .. 1, earliest largest
    keep = torch.zeros(num_rows, 1, num, device=boxes.device)  # [B, 1, P] float 0/1
    changed = torch.zeros(num_rows, 1, num, dtype=torch.bool, device=boxes.device)
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
        keep[:, :, start:stop], changed[:, :, start:stop] = _settle(suppress[:, earlier:], block_alive, iterations)
    certain = changed.cumsum(dim=2) == 0  # [B, 1, P]: before the first unsettled box
    return (keep > 0).logical_and_(certain)[:, 0], certain[:, 0, -1] if num else certain.new_ones(num_rows)


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


def _sorted_keep(boxes: Tensor, scores: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Sort by score, then greedy_keep: order [N], keep [N] bool in that order, settled [] bool."""
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep input order, as torchvision's CPU
    num = boxes.shape[0]
    alive = torch.ones(1, num, dtype=torch.bool, device=boxes.device)
    keep, settled = greedy_keep(boxes[order][None], alive, iou_threshold, num, _block_size(boxes.device),
                                _ITERATIONS)
    return order, keep[0], settled[0]


def nms_keep_mask(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Sync-free NMS: a keep mask in the input order instead of indices. nms(...) == mask's indices by score.

    Args:
        boxes: [N, 4] float, xyxy, any frame.
        scores: [N] float, same device.
        iou_threshold: discard boxes that overlap a kept, higher-scoring box with IoU > iou_threshold.

    Returns:
        [N] bool. Equal to torchvision's whenever every block settles (suppression chains of at most
        _ITERATIONS boxes, always so on real detections); otherwise the boxes visited after the first unsettled
        one are False: a prefix of torchvision's answer, never a box it would drop.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted, _ = _sorted_keep(boxes, scores, iou_threshold)
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
        so this reads the result on the host at the end (with it, the one `settled` flag; an unsettled block,
        only on adversarial chains, is redone exactly with _EXACT_BLOCK). nms_keep_mask is the sync-free form.
    """
    boxes = check_boxes("boxes", boxes)
    scores = check_scores("scores", scores, boxes.shape[0], boxes.device)
    order, keep_sorted, settled = _sorted_keep(boxes, scores, iou_threshold)
    if not settled:
        alive = torch.ones(1, boxes.shape[0], dtype=torch.bool, device=boxes.device)
        keep_sorted = greedy_keep(boxes[order][None], alive, iou_threshold, boxes.shape[0],
                                  block=_EXACT_BLOCK, iterations=_EXACT_BLOCK)[0][0]
    return order[keep_sorted]


def _per_category_keep(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS within each category, all categories in one greedy_keep: one padded row per category.

    Args:
        boxes: [N, 4] float, xyxy. scores: [N] float. idxs: [N] int, the category of each box. N > 0.

    Returns:
        [N] bool keep mask in the input order. Reads the number of categories and the largest one on the host
        (the padded batch's shape), and greedy_keep's `settled` flags.
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
    keep, settled = greedy_keep(batch, alive, iou_threshold, width, block, _ITERATIONS)
    if not settled.all():  # a chain deeper than _ITERATIONS (adversarial input): redo exactly, as nms
        keep = greedy_keep(batch, alive, iou_threshold, width, _EXACT_BLOCK, _EXACT_BLOCK)[0]
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

    greedy_keep settles the rows' keep decisions in a number of operations set by the shapes (P / block blocks
    of _ITERATIONS steps), never by k; a top-k then gathers the first k kept positions.

    Args:
        boxes: [B, P, 4] float, xyxy, sorted by decreasing score along P.
        valid: [B, P] bool; invalid boxes neither survive nor suppress.
        iou_threshold: as in nms.
        k: how many survivors to return per row (a Python int).

    Returns:
        indices: [B, k] int64 into P, in order of survival (so by decreasing score).
        found: [B, k] bool, False where fewer than k boxes survived (those indices are meaningless). Exactly
            greedy NMS's first k survivors when every block settled; otherwise found is False from the first
            unsettled box on (see nms_keep_mask).
    """
    check_boxes("boxes", boxes, batched=True)
    check_tensor("valid", valid)
    if boxes.dim() != 3:
        raise ValueError(f"boxes must have shape [B, P, 4] (xyxy), got {tuple(boxes.shape)}")
    keep, _ = greedy_keep(boxes, valid, iou_threshold, k, _block_size(boxes.device), _ITERATIONS)
    return _first_true(keep, k)

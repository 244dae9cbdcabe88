"""Checks for notebook 05's exercises (05_region_proposal_network): box encoding and decoding (Faster R-CNN eq. 2,
against frcnn_edu.box_coder), anchor labelling (§3.1.2, against frcnn_edu.rpn.label_anchors) and greedy NMS
(§3.3, against frcnn_edu.ops.nms and torchvision.ops.nms).

Each check_* runs the student's function on hand-made cases, one for each place where solutions go wrong (centres
against corners, the weights applied the wrong way, the clamp, IoU exactly at a threshold, ties, cross-boundary
anchors, padded ground truths, an image without any, the order of the kept indices), then on seeded random
cases. The first disagreement raises AssertionError naming the case and what is wrong, with the numbers; a check
that passes returns a one-line summary. Whatever the student's function raises (NotImplementedError while the
exercise is not done) goes through unchanged. Boxes are xyxy, image px, continuous (width = x2 - x1, no +1).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torchvision.ops import nms as torchvision_nms

from ..box_coder import BBOX_CLAMP, decode_boxes, encode_boxes
from ..ops import box_iou, nms
from ..rpn import IGNORED, NEGATIVE, POSITIVE, label_anchors

Weights = tuple[float, float, float, float]
RPN_WEIGHTS: Weights = (1.0, 1.0, 1.0, 1.0)
HEAD_WEIGHTS: Weights = (10.0, 10.0, 5.0, 5.0)  # 1 / py-faster-rcnn's BBOX_NORMALIZE_STDS (0.1, 0.1, 0.2, 0.2)
FG_IOU, BG_IOU = 0.7, 0.3  # FRCNN §3.1.2
RANDOM_SEEDS = range(20)  # random cases per family
# float32 arithmetic done in another order differs in the last bits; every mistake below differs by far more
RTOL, ATOL = 1e-4, 1e-4
DELTA_COLUMNS, BOX_COLUMNS = ("t_x", "t_y", "t_w", "t_h"), ("x1", "y1", "x2", "y2")
LABEL_NAMES = {POSITIVE: "positive (1)", NEGATIVE: "negative (0)", IGNORED: "ignored (-1)"}


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn))


def _box(box: Tensor) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def _check_tensor(where: str, got: object, shape: tuple[int, ...], layout: str, dtype: torch.dtype) -> Tensor:
    """got, once it is a Tensor of this shape (named by layout, e.g. "[K, 4]") and dtype; else AssertionError."""
    if not isinstance(got, Tensor):
        raise AssertionError(f"{where}: expected a torch.Tensor {layout}, got {type(got).__name__}")
    if tuple(got.shape) != shape:
        transposed = " (its transpose)" if tuple(got.shape) == shape[::-1] else ""
        raise AssertionError(f"{where}: expected shape {layout} = {shape}, got {tuple(got.shape)}{transposed}")
    if got.dtype != dtype:
        raise AssertionError(f"{where}: expected dtype {dtype}, got {got.dtype}")
    return got


# ---------------------------------------------------------------------------------------------------- box coding

def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """[K, 4] xyxy -> centre x, centre y, width, height, [K] each."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def _inverse(weights: Weights) -> Weights:
    return tuple(1.0 / w for w in weights)


def _plus_one(boxes: Tensor) -> Tensor:
    """x2 + 1, y2 + 1: the boxes whose continuous widths are the old VOC convention's x2 - x1 + 1."""
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def _encode_from_corners(reference: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """encode_boxes with t_x, t_y measured between the x1, y1 corners instead of the centres."""
    _, _, pw, ph = _centre_size(proposals)
    t_x = weights[0] * (reference[:, 0] - proposals[:, 0]) / pw
    t_y = weights[1] * (reference[:, 1] - proposals[:, 1]) / ph
    return torch.cat([torch.stack([t_x, t_y], dim=1), encode_boxes(reference, proposals, weights)[:, 2:]], dim=1)


def _decode_unclamped(deltas: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """decode_boxes without the clamp of t_w / ww, t_h / wh."""
    px, py, pw, ph = _centre_size(proposals)
    x, y = px + deltas[:, 0] / weights[0] * pw, py + deltas[:, 1] / weights[1] * ph
    w, h = pw * torch.exp(deltas[:, 2] / weights[2]), ph * torch.exp(deltas[:, 3] / weights[3])
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def _decode_clamped_before_weights(deltas: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """decode_boxes with t_w, t_h clamped before the division by ww, wh."""
    return decode_boxes(torch.cat([deltas[:, :2], deltas[:, 2:].clamp(max=BBOX_CLAMP)], dim=1), proposals, weights)


def _decode_clamped_both_ways(deltas: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """decode_boxes with t_w / ww, t_h / wh clamped from below at -log(1000 / 16) too."""
    floor = deltas.new_tensor([-float("inf"), -float("inf"), -BBOX_CLAMP * weights[2], -BBOX_CLAMP * weights[3]])
    return decode_boxes(torch.maximum(deltas, floor), proposals, weights)


def _decode_to_centre_size(deltas: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """decode_boxes's boxes as (centre x, centre y, w, h)."""
    return torch.stack(_centre_size(decode_boxes(deltas, proposals, weights)), dim=1)


def _decode_from_corners(deltas: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """decode_boxes with t_x, t_y moving the x1, y1 corner instead of the centre."""
    boxes = decode_boxes(deltas, proposals, weights)
    _, _, pw, ph = _centre_size(proposals)
    corner = torch.stack([proposals[:, 0] + deltas[:, 0] / weights[0] * pw,
                          proposals[:, 1] + deltas[:, 1] / weights[1] * ph], dim=1)
    return torch.cat([corner, corner + boxes[:, 2:] - boxes[:, :2]], dim=1)


# (what is wrong, what a function with that mistake returns), tried in order when a result disagrees
ENCODE_MISTAKES = (
    ("t_x and t_y are offsets between the centres (x = x1 + (x2 - x1) / 2), not between the corners x1, y1 "
     "(FRCNN eq. 2)", _encode_from_corners),
    ("encode multiplies by the weights, t_x = wx (x_g - x_p) / w_p; dividing by them is decode's job",
     lambda g, p, w: encode_boxes(g, p, _inverse(w))),
    ("the weights were left out: encode multiplies t_x, t_y, t_w, t_h by wx, wy, ww, wh",
     lambda g, p, w: encode_boxes(g, p)),
    ("reference and proposals are swapped: reference is g (the box to reach), proposals is p (where you start), "
     "and the offsets are relative to p: (x_g - x_p) / w_p, log(w_g / w_p)", lambda g, p, w: encode_boxes(p, g, w)),
    ("widths are x2 - x1 with no +1: boxes are continuous (pixel i covers [i, i + 1))",
     lambda g, p, w: encode_boxes(_plus_one(g), _plus_one(p), w)),
)
DECODE_MISTAKES = (
    ("decode divides by the weights, x = x_p + w_p t_x / wx: it undoes encode's multiplication",
     lambda d, p, w: decode_boxes(d, p, _inverse(w))),
    ("the weights were left out: decode divides t_x, t_y, t_w, t_h by wx, wy, ww, wh",
     lambda d, p, w: decode_boxes(d, p)),
    ("clamp t_w / ww and t_h / wh at log(1000 / 16) before exp (frcnn_edu.box_coder.BBOX_CLAMP): a box grows at "
     "most 62.5 times", _decode_unclamped),
    ("the clamp applies to t_w / ww, after the division by the weight, not to t_w itself",
     _decode_clamped_before_weights),
    ("the clamp is from above only, clamp(max=log(1000 / 16)): a box may shrink without limit",
     _decode_clamped_both_ways),
    ("decode returns corners (x1, y1, x2, y2), not (centre x, centre y, w, h)", _decode_to_centre_size),
    ("t_x, t_y move the centre, x = x_p + w_p t_x / wx, not the corner x1; the corners come last, x1 = x - w / 2",
     _decode_from_corners),
)


def _compare_values(where: str, got: Tensor, expected: Tensor, columns: tuple[str, ...], mistakes, args) -> None:
    """AssertionError naming the mistake whose result got matches, else the first value that differs."""
    if torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        return
    for message, mistake in mistakes:
        if torch.allclose(got, mistake(*args), rtol=RTOL, atol=ATOL):
            raise AssertionError(f"{where}: {message}")
    row, column = (~torch.isclose(got, expected, rtol=RTOL, atol=ATOL)).nonzero()[0].tolist()
    raise AssertionError(f"{where}: row {row}, {columns[column]}: expected {float(expected[row, column]):.6g}, "
                         f"got {float(got[row, column]):.6g}")


def _check_encode(encode: Callable, case: str, reference: Tensor, proposals: Tensor, weights: Weights) -> Tensor:
    """The student's encode on one case, once it agrees with encode_boxes."""
    where = f"{_name(encode)}: {case}"
    expected = encode_boxes(reference, proposals, weights)
    got = encode(reference.clone(), proposals.clone(), weights)
    _check_tensor(where, got, tuple(expected.shape), "[K, 4]", expected.dtype)
    _compare_values(where, got, expected, DELTA_COLUMNS, ENCODE_MISTAKES, (reference, proposals, weights))
    return got


def _check_decode(decode: Callable, case: str, deltas: Tensor, proposals: Tensor, weights: Weights) -> None:
    where = f"{_name(decode)}: {case}"
    expected = decode_boxes(deltas, proposals, weights)
    got = decode(deltas.clone(), proposals.clone(), weights)
    _check_tensor(where, got, tuple(expected.shape), "[K, 4]", expected.dtype)
    _compare_values(where, got, expected, BOX_COLUMNS, DECODE_MISTAKES, (deltas, proposals, weights))


# FRCNN eq. 2 worked by hand. p: centres (5, 10) and (38, 44), sizes 10x20 and 16x8; g: centres (12, 14) and
# (41, 44), sizes 20x20 and 32x12. t = ((12 - 5) / 10, (14 - 10) / 20, log(20 / 10), log(20 / 20)) = (0.7, 0.2,
# log 2, 0), and (3 / 16, 0, log 2, log 1.5).
_P = torch.tensor([[0.0, 0, 10, 20], [30, 40, 46, 48]])
_G = torch.tensor([[2.0, 4, 22, 24], [25, 38, 57, 50]])
_T = torch.tensor([[0.7, 0.2, math.log(2), 0.0], [3 / 16, 0.0, math.log(2), math.log(1.5)]])


def _random_pairs(seed: int) -> tuple[Tensor, Tensor, Weights]:
    """50 random (reference, proposal) pairs, sides 2 to 200 px, and the RPN's or the head's weights."""
    gen = torch.Generator().manual_seed(seed)
    corners = torch.rand(2, 50, 2, generator=gen) * 800  # [2, 50, 2]: reference, proposals
    sizes = torch.rand(2, 50, 2, generator=gen) * 198 + 2
    boxes = torch.cat([corners, corners + sizes], dim=2)
    return boxes[0], boxes[1], (RPN_WEIGHTS, HEAD_WEIGHTS)[seed % 2]


def check_box_coding(encode: Callable, decode: Callable) -> str:
    """Compare the student's encode(reference, proposals, weights) and decode(deltas, proposals, weights) with
    frcnn_edu.box_coder's encode_boxes and decode_boxes (FRCNN eq. 2).

    Args:
        encode: reference [K, 4], proposals [K, 4] (xyxy, image px), weights (wx, wy, ww, wh) -> [K, 4]
            (t_x, t_y, t_w, t_h), in the inputs' dtype.
        decode: deltas [K, 4], proposals [K, 4], weights -> [K, 4] xyxy, image px, t_w / ww and t_h / wh
            clamped at log(1000 / 16) before exp.

    Returns:
        A one-line summary. Raises AssertionError at the first case that disagrees, naming the mistake (centres
        against corners, the weights multiplied or divided or left out, reference and proposals swapped, a +1 in
        the widths, the clamp missing or misplaced, (centre, size) returned for corners) or else the first value
        that differs; and for a wrong shape or dtype.
    """
    head = HEAD_WEIGHTS
    encode_cases = [
        ("FRCNN eq. 2 worked by hand, the RPN's weights (1, 1, 1, 1)", _G, _P, RPN_WEIGHTS),
        ("the same boxes with the head's weights (10, 10, 5, 5)", _G, _P, head),
        ("float64 boxes give float64 offsets", _G.double(), _P.double(), head),
    ]
    for case, reference, proposals, weights in encode_cases:
        _check_encode(encode, case, reference, proposals, weights)
    p0 = _P[:1]  # (0, 0, 10, 20)
    decode_cases = [
        ("FRCNN eq. 2 worked by hand: t = (0.7, 0.2, log 2, 0) moves (0, 0, 10, 20) onto (2, 4, 22, 24)",
         _T, _P, RPN_WEIGHTS),
        ("the head's weights (10, 10, 5, 5): the same move is t = (7, 2, 5 log 2, 0)",
         _T * _T.new_tensor(head), _P, head),
        ("t_w = t_h = 10 is clamped at log(1000 / 16): the box grows 62.5 times, not e^10 times",
         torch.tensor([[0.0, 0, 10, 10]]), p0, RPN_WEIGHTS),
        ("the head's weights: t_w = t_h = 15 is 15 / 5 = 3 once divided, below the clamp",
         torch.tensor([[0.0, 0, 15, 15]]), p0, head),
        ("t_w = t_h = -10: the box shrinks e^10 times, with no clamp from below",
         torch.tensor([[0.0, 0, -10, -10]]), p0, RPN_WEIGHTS),
        ("float64 deltas give float64 boxes", _T.double(), _P.double(), head),
        ("round trip: decode(encode(g, p), p) gives g back, with your encode", encode(_G.clone(), _P.clone(), head),
         _P, head),
    ]
    for case, deltas, proposals, weights in decode_cases:
        _check_decode(decode, case, deltas, proposals, weights)
    for seed in RANDOM_SEEDS:
        reference, proposals, weights = _random_pairs(seed)
        case = f"random case {seed} ({len(reference)} pairs, weights {weights})"
        deltas = _check_encode(encode, case, reference, proposals, weights)
        _check_decode(decode, f"{case}, round trip", deltas, proposals, weights)
        beyond_clamp = deltas * 3  # some t_w / ww, t_h / wh above log(1000 / 16)
        _check_decode(decode, f"{case}, deltas times 3", beyond_clamp, proposals, weights)
    return (f"box coding: encode on {len(encode_cases)} hand-made and {len(RANDOM_SEEDS)} random cases, decode on "
            f"{len(decode_cases)} and {2 * len(RANDOM_SEEDS)} (round trips included), agree with "
            f"frcnn_edu.box_coder.encode_boxes and decode_boxes")


# ----------------------------------------------------------------------------------------------- anchor labelling

def _image(anchors: list, gt_boxes: list, gt_valid: list | None = None, usable: list | None = None) -> tuple:
    """One image's case as label_anchors takes it: anchors [M, 4], gt_boxes [1, G, 4], gt_valid [1, G],
    usable [1, M]; every ground truth real and every anchor usable unless said."""
    anchors, gt_boxes = torch.tensor(anchors, dtype=torch.float32), torch.tensor(gt_boxes, dtype=torch.float32)
    gt_valid = torch.ones(len(gt_boxes), dtype=torch.bool) if gt_valid is None else torch.tensor(gt_valid)
    usable = torch.ones(len(anchors), dtype=torch.bool) if usable is None else torch.tensor(usable)
    return anchors, gt_boxes[None], gt_valid[None], usable[None]


def _label_cases() -> list[tuple[str, tuple]]:
    """Hand-made labelling cases, each at one rule's boundary (FRCNN §3.1.2); anchors far away have IoU 0."""
    far = [20, 20, 30, 30]
    two_images = (torch.tensor([[0.0, 0, 10, 10], far]), torch.tensor([[[0.0, 0, 10, 10]], [far]]),
                  torch.ones(2, 1, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool))
    return [
        ("an anchor at IoU exactly 0.7, not the best one",
         _image([[0, 0, 10, 7], [0, 0, 10, 10], far], [[0, 0, 10, 7]])),
        ("an anchor at IoU exactly 0.3, not the best one",
         _image([[0, 0, 10, 3], [0, 0, 10, 10], far], [[0, 0, 10, 3]])),
        ("a ground truth whose best anchor is at IoU 0.5",
         _image([[0, 0, 10, 5], [0, 0, 10, 2], far], [[0, 0, 10, 10]])),
        ("a ground truth whose best anchor is at IoU 0.2",
         _image([[0, 0, 10, 2], [0, 0, 10, 1], far], [[0, 0, 10, 10]])),
        ("two anchors share a ground truth's best IoU, 0.5",
         _image([[0, 0, 10, 5], [0, 5, 10, 10], [0, 0, 10, 2]], [[0, 0, 10, 10]])),
        ("an anchor at IoU 0.4 with one ground truth and 0 with the other",
         _image([[0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 10, 4]], [[0, 0, 10, 10], [100, 100, 110, 110]])),
        ("cross-boundary anchors (usable False), one of them on the ground truth",
         _image([[0, 0, 10, 10], [0, 0, 10, 6], far, [40, 40, 50, 50]], [[0, 0, 10, 10]],
                usable=[False, True, False, True])),
        ("a padded ground-truth row (gt_valid False) on an anchor",
         _image([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10], [50, 50, 60, 60]], gt_valid=[True, False])),
        ("an image without ground truth (gt_valid all False), one anchor not usable",
         _image([[0, 0, 10, 10], far, [5, 5, 15, 15]], [[0, 0, 10, 10]], gt_valid=[False],
                usable=[True, True, False])),
        ("a ground truth that no anchor overlaps", _image([far, [40, 40, 50, 50]], [[0, 0, 10, 10]])),
        ("two images, each with its own ground truth", two_images),
        ("matched indexes G with the padded rows: a padded row first",
         _image([[0, 0, 10, 10], far], [[50, 50, 60, 60], [0, 0, 10, 10]], gt_valid=[False, True])),
        ("an anchor that two ground truths overlap equally (IoU 0.5 each)",
         _image([[0, 0, 10, 10], [40, 40, 50, 50]], [[0, 0, 10, 5], [0, 5, 10, 10]])),
    ]


def _random_label_case(seed: int) -> tuple:
    """Two images of 3 ground-truth rows (some padded), 40 integer anchors, half of them near image 0's ground
    truths (so both rules and ties turn up), about 1 in 7 not usable."""
    gen = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, 80, (2, 3, 2), generator=gen)
    gt_boxes = torch.cat([corners, corners + torch.randint(8, 40, (2, 3, 2), generator=gen)], dim=2).float()
    near = gt_boxes[0].repeat(7, 1)[:20] + torch.randint(-3, 4, (20, 4), generator=gen)  # [20, 4]
    corners = torch.randint(0, 100, (20, 2), generator=gen)
    elsewhere = torch.cat([corners, corners + torch.randint(4, 50, (20, 2), generator=gen)], dim=1)
    anchors = torch.cat([near, elsewhere.float()])  # [40, 4]
    gt_valid = torch.rand(2, 3, generator=gen) < 0.8
    usable = torch.rand(2, 40, generator=gen) < 0.85
    return anchors, gt_boxes, gt_valid, usable


def _best_anchor_rule(iou: Tensor, usable: Tensor, m: int) -> str:
    """Why anchor m is positive by rule (i), for one image's iou [M, G] (padding at 0); "" when it is not."""
    iou = iou.masked_fill(~usable[:, None], -1.0)  # a best anchor is a usable one
    best_for_gt = iou.max(dim=0).values  # [G]
    ground_truths = ((iou[m] == best_for_gt) & (best_for_gt > 0)).nonzero()
    if not len(ground_truths):
        return ""
    g = int(ground_truths[0])
    value, shared = best_for_gt[g], int((iou[:, g] == best_for_gt[g]).sum()) - 1
    why = f"positive (1) by rule (i): it has ground truth {g}'s highest IoU among the usable anchors, {value:.4g}"
    if shared:
        why += f", shared with {shared} other anchor(s): every anchor at that IoU is positive"
    if value < BG_IOU:
        why += f"; rule (i) wins even below bg_iou_thresh {BG_IOU}"
    return why


def _negative_notes(raw_iou: Tensor, iou: Tensor, gt_valid: Tensor, usable: Tensor, m: int) -> str:
    """What a negative anchor's student may have missed: a padded row it overlaps, an unmatched ground truth."""
    notes = ""
    if (raw_iou[m][~gt_valid] > iou[m].max()).any():
        notes += "; it overlaps a padded ground-truth row (gt_valid False) more, and padding counts in neither rule"
    unmatched = (gt_valid & (iou[usable].amax(dim=0) <= 0)).nonzero()
    if len(unmatched):
        notes += (f"; ground truth {int(unmatched[0])} overlaps no usable anchor, so it has no best anchor "
                  f"(rule (i) needs IoU > 0)")
    return notes


def _why_label(anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, usable: Tensor, m: int) -> str:
    """The label label_anchors gives anchor m of one image (gt_boxes [G, 4], gt_valid [G], usable [M]), and the
    rule that decides it, with its numbers."""
    if not usable[m]:
        return "ignored (-1): the anchor is not usable (it crosses the image border), whatever its IoU"
    if not gt_valid.any():
        return "negative (0): the image has no ground truth (gt_valid all False), so every usable anchor is negative"
    raw_iou = box_iou(anchors, gt_boxes)  # [M, G]
    iou = raw_iou.masked_fill(~gt_valid, 0.0)
    best, g = iou[m].max(), int(iou[m].argmax())  # best stays a float32 tensor: compared as label_anchors does
    if best >= FG_IOU:
        equal = " (equal counts: positive means IoU >= fg_iou_thresh)" if best == FG_IOU else ""
        return f"positive (1): IoU {best:.4g} with ground truth {g} is >= fg_iou_thresh {FG_IOU}{equal}"
    rule_i = _best_anchor_rule(iou, usable, m)
    if rule_i:
        return rule_i
    if best < BG_IOU:
        return (f"negative (0): its IoU is below bg_iou_thresh {BG_IOU} with every ground truth (highest {best:.4g})"
                + _negative_notes(raw_iou, iou, gt_valid, usable, m))
    equal = " (equal to bg_iou_thresh is not negative: negative means IoU < bg_iou_thresh)" if best == BG_IOU else ""
    return (f"ignored (-1): its highest IoU, {best:.4g} with ground truth {g}, lies in [bg_iou_thresh, "
            f"fg_iou_thresh) = [{BG_IOU}, {FG_IOU}), and a negative needs IoU < {BG_IOU} with every ground truth"
            f"{equal}")


def _check_labels(fn: Callable, case: str, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor,
                  usable: Tensor) -> None:
    """The student's labelling of one case against label_anchors: shapes, dtypes, labels, then matched."""
    where = f"{_name(fn)}: {case}"
    expected, expected_matched = label_anchors(anchors, gt_boxes, gt_valid, usable, FG_IOU, BG_IOU)
    got = fn(anchors.clone(), gt_boxes.clone(), gt_valid.clone(), usable.clone(), FG_IOU, BG_IOU)
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise AssertionError(f"{where}: expected a pair (labels, matched), got {type(got).__name__}")
    labels = _check_tensor(f"{where}: labels", got[0], tuple(expected.shape), "[N, M]", torch.int64)
    matched = _check_tensor(f"{where}: matched", got[1], tuple(expected.shape), "[N, M]", torch.int64)
    wrong = (labels != expected).nonzero()
    if len(wrong):
        n, m = wrong[0].tolist()
        why = _why_label(anchors, gt_boxes[n], gt_valid[n], usable[n], m)
        got_label = LABEL_NAMES.get(int(labels[n, m]), str(int(labels[n, m])))
        raise AssertionError(f"{where}: image {n}, anchor {m} {_box(anchors[m])}: expected {why}; got {got_label}")
    wrong = ((expected == POSITIVE) & (matched != expected_matched)).nonzero()
    if len(wrong):
        n, m = wrong[0].tolist()
        raise AssertionError(f"{where}: image {n}, positive anchor {m} {_box(anchors[m])}: matched should be "
                             f"{int(expected_matched[n, m])}, the index in G (padded rows counted) of its highest-IoU "
                             f"ground truth, the first of equal IoUs as torch.max gives it; got {int(matched[n, m])}")


def check_anchor_labels(fn: Callable) -> str:
    """Compare the student's fn(anchors, gt_boxes, gt_valid, usable, fg_iou_thresh, bg_iou_thresh) with
    frcnn_edu.rpn.label_anchors (FRCNN §3.1.2), at the thresholds 0.7 and 0.3.

    Args:
        fn: anchors [M, 4] xyxy image px, gt_boxes [N, G, 4] xyxy image px (padded), gt_valid [N, G] bool,
            usable [N, M] bool, two floats -> (labels [N, M] int64 in {1, 0, -1}, matched [N, M] int64 index in G).

    Returns:
        A one-line summary. Raises AssertionError at the first anchor labelled otherwise, giving the label expected
        and the rule behind it (IoU >= 0.7, rule (i) with its ties, below 0.3 with every ground truth, between the
        thresholds, not usable, no ground truth, padding), then at the first positive anchor matched to another
        ground truth; and for a result that is not a pair, or a wrong shape or dtype.
    """
    hand = _label_cases()
    for case, args in hand:
        _check_labels(fn, case, *args)
    for seed in RANDOM_SEEDS:
        _check_labels(fn, f"random case {seed} (2 images, 40 anchors)", *_random_label_case(seed))
    return (f"anchor labels: {len(hand)} hand-made and {len(RANDOM_SEEDS)} random cases agree with "
            f"frcnn_edu.rpn.label_anchors")


# --------------------------------------------------------------------------------------------------- greedy NMS

def _nms_cases() -> list[tuple[str, Tensor, Tensor, float]]:
    """Hand-made (boxes [N, 4], scores [N], iou_threshold), each at one rule of greedy NMS."""
    square, apart, right = [0.0, 0, 10, 10], [20.0, 0, 30, 10], [40.0, 0, 50, 10]
    cases = [
        ("one box", [square], [0.5], 0.5),
        ("no boxes at all", torch.zeros(0, 4), torch.zeros(0), 0.5),
        ("three boxes apart, scores not in index order", [square, apart, right], [0.5, 0.1, 0.9], 0.5),
        ("two boxes at IoU exactly 0.5, iou_threshold 0.5", [[0.0, 0, 3, 1], [1.0, 0, 4, 1]], [0.9, 0.8], 0.5),
        ("a chain at IoU 0.43: B overlaps A, C overlaps B but not A",
         [square, [4.0, 0, 14, 10], [8.0, 0, 18, 10]], [0.9, 0.8, 0.7], 0.25),
        ("equal scores, two of the boxes overlapping", [square, apart, [1.0, 0, 11, 10]], [0.5, 0.5, 0.5], 0.5),
        ("three identical boxes", [square, square, square], [0.3, 0.9, 0.6], 0.7),
    ]
    return [(case, torch.as_tensor(boxes), torch.as_tensor(scores), thresh) for case, boxes, scores, thresh in cases]


def _random_nms_case(seed: int) -> tuple[Tensor, Tensor, float]:
    """60 boxes in 5 clusters (so that many overlap), scores in tenths (so that some tie), IoU 0.5 or 0.7."""
    gen = torch.Generator().manual_seed(seed)
    centres = (torch.rand(5, 2, generator=gen) * 200)[torch.randint(0, 5, (60,), generator=gen)]  # [60, 2]
    centres = centres + torch.randn(60, 2, generator=gen) * 8
    sizes = torch.rand(60, 2, generator=gen) * 30 + 10
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    scores = torch.randint(0, 10, (60,), generator=gen).float() / 10
    return boxes, scores, (0.5, 0.7)[seed % 2]


def _why_order_differs(scores: Tensor, expected: Tensor, got: Tensor) -> str:
    """The same boxes kept, in another order: which rule of the order is broken."""
    k = int((got != expected).nonzero()[0])
    e, g = int(expected[k]), int(got[k])
    if scores[e] == scores[g]:
        return (f"equal scores ({float(scores[e]):.4g}): the lower index comes first, box {e} before box {g} "
                f"(a stable sort by decreasing score, as torchvision's CPU kernel)")
    if torch.equal(got, got.sort().values):
        return "the kept indices come by decreasing score, not in input order"
    return f"the kept indices come by decreasing score: box {e} (score {float(scores[e]):.4g}) before box {g} " \
           f"(score {float(scores[g]):.4g})"


def _why_dropped_is_kept(i: int, earlier: list[int], kept: set, said: set, iou: Tensor, scores: Tensor,
                         thresh: float) -> str:
    """Why greedy NMS keeps box i, which the student's function dropped (earlier: the boxes before i by score)."""
    ties = [j for j in said if j > i and scores[j] == scores[i] and float(iou[i, j]) > thresh]
    if ties:
        return (f"equal scores ({float(scores[i]):.4g}): the lower index goes first, so box {i} is kept and suppresses "
                f"box {ties[0]}, not the other way round")
    overlaps = [(float(iou[i, j]), j) for j in earlier if j in kept]
    top, j = max(overlaps, default=(0.0, None))
    if math.isclose(top, thresh, rel_tol=1e-6):  # equal once both are float32
        return (f"box {i} should be kept: its IoU with kept box {j} is exactly iou_threshold {thresh}, and only "
                f"IoU > iou_threshold suppresses")
    suppressed = [j for j in earlier if j not in kept and float(iou[i, j]) > thresh]
    if suppressed:
        return (f"box {i} should be kept: box {suppressed[0]} overlaps it (IoU {float(iou[i, suppressed[0]]):.4g}) "
                f"but was itself suppressed, and only kept boxes suppress (greedy NMS)")
    return (f"box {i} (score {float(scores[i]):.4g}) should be kept: no kept higher-scoring box overlaps it with "
            f"IoU > iou_threshold {thresh} (the highest is {top:.4g})")


def _why_kept_differ(boxes: Tensor, scores: Tensor, thresh: float, expected: Tensor, got: Tensor) -> str:
    """What greedy NMS decides otherwise than the student's function, at the first box (by score) they differ on."""
    if sorted(got.tolist()) == sorted(expected.tolist()):
        return _why_order_differs(scores, expected, got)
    iou, kept, said = box_iou(boxes, boxes), set(expected.tolist()), set(got.tolist())
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    for position, i in enumerate(order):
        if (i in kept) == (i in said):
            continue
        if i in kept:
            return _why_dropped_is_kept(i, order[:position], kept, said, iou, scores, thresh)
        j = next(j for j in order[:position] if j in kept and float(iou[i, j]) > thresh)
        return (f"box {i} (score {float(scores[i]):.4g}) should be suppressed: box {j} (score "
                f"{float(scores[j]):.4g}), kept before it, overlaps it with IoU {float(iou[i, j]):.4g} > "
                f"iou_threshold {thresh}")
    return "the kept indices must be distinct indices into boxes, each box once"


def _check_nms(fn: Callable, case: str, boxes: Tensor, scores: Tensor, thresh: float) -> None:
    """The student's NMS on one case against frcnn_edu.ops.nms (itself checked against torchvision's)."""
    where = f"{_name(fn)}: {case}"
    expected = nms(boxes, scores, thresh)
    reference = torchvision_nms(boxes, scores, thresh)
    if not torch.equal(expected, reference):
        raise AssertionError(f"{case}: frcnn_edu.ops.nms keeps {expected.tolist()} but torchvision.ops.nms keeps "
                             f"{reference.tolist()}: a bug in the package, not in your function")
    got = fn(boxes.clone(), scores.clone(), thresh)
    if not isinstance(got, Tensor) or got.dim() != 1:
        shape = f"shape {tuple(got.shape)}" if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"{where}: expected a 1-D torch.Tensor [K] of kept indices, got {shape}")
    if got.dtype != torch.int64:
        raise AssertionError(f"{where}: expected int64 indices, got {got.dtype} (torch.tensor of an empty list is "
                             f"float32: give dtype=torch.int64)")
    if not torch.equal(got, expected):
        why = _why_kept_differ(boxes, scores, thresh, expected, got)
        raise AssertionError(f"{where}: {why} (expected {expected.tolist()}, got {got.tolist()})")


def check_nms(fn: Callable) -> str:
    """Compare the student's fn(boxes, scores, iou_threshold) with frcnn_edu.ops.nms and torchvision.ops.nms.

    Args:
        fn: boxes [N, 4] float xyxy, scores [N] float, iou_threshold a Python float -> [K] int64 indices of the
            kept boxes, by decreasing score (equal scores: lower index first).

    Returns:
        A one-line summary. Raises AssertionError at the first case that disagrees, saying why greedy NMS keeps or
        suppresses the first box decided otherwise (IoU equal to the threshold does not suppress; only kept boxes
        suppress; equal scores go by index) or which rule of the order is broken (by decreasing score, not input
        order; ties by index); and for a result that is not a 1-D int64 tensor.
    """
    hand = _nms_cases()
    for case, boxes, scores, thresh in hand:
        _check_nms(fn, case, boxes, scores, thresh)
    for seed in RANDOM_SEEDS:
        _check_nms(fn, f"random case {seed} (60 boxes, scores in tenths)", *_random_nms_case(seed))
    return (f"nms: {len(hand)} hand-made and {len(RANDOM_SEEDS)} random cases agree with frcnn_edu.ops.nms and "
            f"torchvision.ops.nms")

"""frcnn_edu.exercises.rpn: notebook 05's checks pass the package's functions and the notebook's solutions (written
again here), fail each deliberately broken solution with the message that names its mistake, and let the student's
NotImplementedError through."""
import math

import pytest
import torch
import torchvision

from frcnn_edu.box_coder import decode_boxes, encode_boxes
from frcnn_edu.exercises.rpn import check_anchor_labels, check_box_coding, check_nms
from frcnn_edu.ops import box_iou, nms
from frcnn_edu.rpn import label_anchors

CLAMP = math.log(1000 / 16)


# ----------------------------------------------------------------------------- the notebook's solutions, again

def centre_size(boxes):
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def my_encode_boxes(reference, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    gx, gy, gw, gh = centre_size(reference)
    px, py, pw, ph = centre_size(proposals)
    return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)],
                       dim=1)


def decode_with(deltas, proposals, weights, low=-math.inf, clamp_first=False, move_corner=False,
                return_centre_size=False):
    """The notebook's decode (all defaults), or with one mistake: a clamp from below at `low`, the clamp before the
    division by the weight, the offsets applied to the corner, (centre, size) returned."""
    wx, wy, ww, wh = weights
    px, py, pw, ph = centre_size(proposals)
    if clamp_first:
        deltas = torch.cat([deltas[:, :2], deltas[:, 2:].clamp(max=CLAMP)], dim=1)
    w = pw * torch.exp((deltas[:, 2] / ww).clamp(min=low, max=CLAMP))
    h = ph * torch.exp((deltas[:, 3] / wh).clamp(min=low, max=CLAMP))
    if move_corner:
        x1, y1 = proposals[:, 0] + deltas[:, 0] / wx * pw, proposals[:, 1] + deltas[:, 1] / wy * ph
        return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)
    x, y = px + deltas[:, 0] / wx * pw, py + deltas[:, 1] / wy * ph
    if return_centre_size:
        return torch.stack([x, y, w, h], dim=1)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def my_decode_boxes(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    return decode_with(deltas, proposals, weights)


def decode_unclamped(deltas, proposals, weights):
    wx, wy, ww, wh = weights
    px, py, pw, ph = centre_size(proposals)
    x, y = px + deltas[:, 0] / wx * pw, py + deltas[:, 1] / wy * ph
    w, h = pw * torch.exp(deltas[:, 2] / ww), ph * torch.exp(deltas[:, 3] / wh)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def labels_with(anchors, gt_boxes, gt_valid, usable, fg_iou_thresh, bg_iou_thresh, rule_i=True, all_ties=True,
                rule_i_last=True, below_for_all=True, best_among_usable=True, need_overlap=True,
                matched_in_real=False):
    """The notebook's labelling (all defaults), or with one mistake: no rule (i), rule (i) for the argmax anchor
    only, the negative rule applied after rule (i), negative below 0.3 with some ground truth (not all), the best
    anchor taken over all anchors, rule (i) for ground truths no anchor overlaps, matched counted among real rows."""
    labels, matched = [], []
    for boxes, valid, ok in zip(gt_boxes, gt_valid, usable):
        iou = torch.where(valid[None, :], box_iou(anchors, boxes), 0.0)  # [M, G]
        iou = torch.where(ok[:, None], iou, -1.0)
        best_iou, best_gt = iou.max(dim=1)
        label = torch.full_like(best_gt, -1)
        worst_real = torch.where(valid[None, :], iou, 2.0).amin(dim=1)  # a "below 0.3 with some" student's test
        negative = (best_iou >= 0) & ((best_iou if below_for_all else worst_real) < bg_iou_thresh)
        is_best = torch.zeros_like(ok)
        if rule_i:
            scored = iou if best_among_usable else torch.where(valid[None, :], box_iou(anchors, boxes), 0.0)
            gt_best = scored.max(dim=0).values  # [G]
            hits = scored == gt_best if all_ties else torch.nn.functional.one_hot(scored.argmax(0), len(ok)).T > 0
            hits = hits & ((gt_best > 0) if need_overlap else valid) & ok[:, None]
            is_best = hits.any(dim=1)
        if rule_i_last:
            label[negative] = 0
        label[best_iou >= fg_iou_thresh] = 1
        label[is_best] = 1
        if not rule_i_last:
            label[negative] = 0
        labels.append(label)
        matched.append(best_gt - (~valid).cumsum(0)[best_gt] if matched_in_real else best_gt)
    return torch.stack(labels), torch.stack(matched)


def my_label_anchors(anchors, gt_boxes, gt_valid, usable, fg_iou_thresh, bg_iou_thresh):
    return labels_with(anchors, gt_boxes, gt_valid, usable, fg_iou_thresh, bg_iou_thresh)


def nms_with(boxes, scores, iou_threshold, suppress_equal=False, only_kept_suppress=True, ties_reversed=False,
             input_order=False):
    """The notebook's greedy NMS (all defaults), or with one mistake: IoU >= threshold suppresses, suppressed boxes
    suppress too, equal scores by decreasing index, the result in input order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if ties_reversed:
        order = torch.sort(scores, stable=True).indices.flip(0)
    iou = box_iou(boxes, boxes)  # [N, N]
    overlapping = iou >= iou_threshold if suppress_equal else iou > iou_threshold
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if not suppressed[i]:
            keep.append(i)
        if not suppressed[i] or not only_kept_suppress:
            suppressed |= overlapping[i]
    keep = sorted(keep) if input_order else keep
    return torch.tensor(keep, dtype=torch.int64)


def my_nms(boxes, scores, iou_threshold):
    return nms_with(boxes, scores, iou_threshold)


# ---------------------------------------------------------------------------------------------- what passes

def test_the_package_and_the_notebook_solutions_pass():
    assert "agree with frcnn_edu.box_coder" in check_box_coding(encode_boxes, decode_boxes)
    assert "agree with frcnn_edu.box_coder" in check_box_coding(my_encode_boxes, my_decode_boxes)
    assert "agree with frcnn_edu.rpn.label_anchors" in check_anchor_labels(label_anchors)
    assert "agree with frcnn_edu.rpn.label_anchors" in check_anchor_labels(my_label_anchors)
    for fn in (nms, torchvision.ops.nms, my_nms):
        assert check_nms(fn).startswith("nms: 7 hand-made and 20 random cases agree")


def test_not_done_goes_through_unchanged():
    def not_done(*args):
        raise NotImplementedError("your code here: replace this line")

    for check in (check_anchor_labels, check_nms, lambda fn: check_box_coding(fn, my_decode_boxes),
                  lambda fn: check_box_coding(my_encode_boxes, fn)):
        with pytest.raises(NotImplementedError, match="your code here"):
            check(not_done)


# ---------------------------------------------------------------------------------------- box coding mistakes

def inverse(weights):
    return tuple(1 / w for w in weights)


def plus_one(boxes):
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def encode_from_corners(g, p, w):
    t = my_encode_boxes(g, p, w)
    t[:, 0] = w[0] * (g[:, 0] - p[:, 0]) / (p[:, 2] - p[:, 0])
    t[:, 1] = w[1] * (g[:, 1] - p[:, 1]) / (p[:, 3] - p[:, 1])
    return t


def with_t_x_negated(g, p, w):
    return my_encode_boxes(g, p, w) * torch.tensor([-1.0, 1, 1, 1], dtype=g.dtype)


@pytest.mark.parametrize("encode, message", [
    (lambda g, p, w: my_encode_boxes(g, p, w).T, r"expected shape \[K, 4\] = \(2, 4\), got \(4, 2\) \(its transpose\)"),
    (lambda g, p, w: my_encode_boxes(g, p, w).tolist(), "expected a torch.Tensor"),
    (lambda g, p, w: my_encode_boxes(g.float(), p.float(), w), "float64 boxes .*expected dtype torch.float64, got "
                                                                  "torch.float32"),
    (encode_from_corners, "offsets between the centres .* not between the corners"),
    (lambda g, p, w: my_encode_boxes(g, p, inverse(w)), "encode multiplies by the weights"),
    (lambda g, p, w: my_encode_boxes(g, p), "head's weights .*the weights were left out: encode multiplies"),
    (lambda g, p, w: my_encode_boxes(p, g, w), "reference and proposals are swapped"),
    (lambda g, p, w: my_encode_boxes(plus_one(g), plus_one(p), w), r"with no \+1"),
    (with_t_x_negated, "row 0, t_x: expected 0.7, got -0.7"),
])
def test_encode_mistakes_are_named(encode, message):
    with pytest.raises(AssertionError, match=message):
        check_box_coding(encode, my_decode_boxes)


@pytest.mark.parametrize("decode, message", [
    (lambda d, p, w: decode_with(d, p, w).T, r"expected shape \[K, 4\] = \(2, 4\), got \(4, 2\)"),
    (lambda d, p, w: decode_with(d.float(), p.float(), w), "float64 deltas .*expected dtype torch.float64"),
    (lambda d, p, w: decode_with(d, p, inverse(w)), "decode divides by the weights"),
    (lambda d, p, w: decode_with(d, p, (1.0, 1.0, 1.0, 1.0)), "the weights were left out: decode divides"),
    (decode_unclamped, r"grows 62.5 times.*clamp t_w / ww and t_h / wh at log\(1000 / 16\)"),
    (lambda d, p, w: decode_with(d, p, w, clamp_first=True), "the clamp applies to t_w / ww, after the division"),
    (lambda d, p, w: decode_with(d, p, w, low=-CLAMP), "the clamp is from above only"),
    (lambda d, p, w: decode_with(d, p, w, return_centre_size=True), r"returns corners .*not \(centre x"),
    (lambda d, p, w: decode_with(d, p, w, move_corner=True), "move the centre"),
    (lambda d, p, w: decode_with(d, p, w)[:, [1, 0, 2, 3]], "worked by hand.*row 0, x1: expected 2, got 4"),
])
def test_decode_mistakes_are_named(decode, message):
    with pytest.raises(AssertionError, match=message):
        check_box_coding(my_encode_boxes, decode)


# ---------------------------------------------------------------------------------- anchor labelling mistakes

def float_labels(*args):
    labels, matched = my_label_anchors(*args)
    return labels.float(), matched


def never_negative_without_ground_truth(anchors, gt_boxes, gt_valid, usable, fg, bg):
    labels, matched = my_label_anchors(anchors, gt_boxes, gt_valid, usable, fg, bg)
    return labels.masked_fill(~gt_valid.any(dim=1, keepdim=True), -1), matched


@pytest.mark.parametrize("fn, message", [
    (lambda a, g, v, u, fg, bg: my_label_anchors(a, g, v, u, fg, bg)[0], "expected a pair .*got Tensor"),
    (lambda a, g, v, u, fg, bg: [t.T for t in my_label_anchors(a, g, v, u, fg, bg)],
     r"labels: expected shape \[N, M\] = \(1, 3\), got \(3, 1\)"),
    (float_labels, "labels: expected dtype torch.int64, got torch.float32"),
    # a threshold a hair above stands for a strict > (and below the other one, for <=)
    (lambda a, g, v, u, fg, bg: my_label_anchors(a, g, v, u, fg + 1e-6, bg),
     r"IoU exactly 0.7.*anchor 1 \(0, 0, 10, 10\): expected positive \(1\): IoU 0.7 .* \(equal counts: positive "
     r"means IoU >= fg_iou_thresh\); got ignored \(-1\)"),
    (lambda a, g, v, u, fg, bg: my_label_anchors(a, g, v, u, fg, bg + 1e-6),
     r"IoU exactly 0.3.*expected ignored \(-1\).*\(equal to bg_iou_thresh is not negative.*got negative \(0\)"),
    (lambda *args: labels_with(*args, rule_i=False), r"best anchor is at IoU 0.5.*positive \(1\) by rule \(i\)"),
    (lambda *args: labels_with(*args, rule_i_last=False), r"IoU 0.2.*rule \(i\) wins even below bg_iou_thresh"),
    (lambda *args: labels_with(*args, all_ties=False), "shared with 1 other anchor"),
    (lambda *args: labels_with(*args, below_for_all=False),
     r"IoU 0.4 with one .*expected ignored \(-1\).*got negative"),
    (lambda a, g, v, u, fg, bg: my_label_anchors(a, g, v, torch.ones_like(u), fg, bg),
     r"anchor 0 \(0, 0, 10, 10\): expected ignored \(-1\): the anchor is not usable.*got positive \(1\)"),
    (lambda *args: labels_with(*args, best_among_usable=False), "anchor 1 .*highest IoU among the usable anchors"),
    (lambda a, g, v, u, fg, bg: my_label_anchors(a, g, torch.ones_like(v), u, fg, bg),
     r"padded ground-truth row .*anchor 1 \(50, 50, 60, 60\): expected negative.*\(gt_valid False\)"),
    (never_negative_without_ground_truth, "expected negative .*the image has no ground truth"),
    (lambda *args: labels_with(*args, need_overlap=False), r"overlaps no usable anchor, so it has no best anchor"),
    (lambda *args: labels_with(*args, matched_in_real=True), r"matched should be 1, the index in G .*got 0"),
])
def test_labelling_mistakes_are_named(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_anchor_labels(fn)


# ----------------------------------------------------------------------------------------------- nms mistakes

def keep_everything(boxes, scores, iou_threshold):
    return torch.sort(scores, descending=True, stable=True).indices


@pytest.mark.parametrize("fn, message", [
    (lambda b, s, t: nms_with(b, s, t).tolist(), r"expected a 1-D torch.Tensor \[K\] of kept indices, got list"),
    (lambda b, s, t: nms_with(b, s, t)[None], r"got shape \(1, 1\)"),
    (lambda b, s, t: torch.tensor(nms_with(b, s, t).tolist()), "no boxes.*expected int64 indices, got torch.float32"),
    (lambda b, s, t: nms_with(b, s, t, input_order=True), "by decreasing score, not in input order"),
    (lambda b, s, t: nms_with(b, s, t).flip(0), r"by decreasing score: box 2 \(score 0.9\) before box 1"),
    (lambda b, s, t: nms_with(b, s, t, suppress_equal=True),
     "exactly 0.5.*box 1 should be kept: its IoU with kept box 0 is exactly iou_threshold 0.5"),
    (lambda b, s, t: nms_with(b, s, t, only_kept_suppress=False), "was itself suppressed, and only kept boxes"),
    (lambda b, s, t: nms_with(b, s, t, ties_reversed=True),
     r"equal scores \(0.5\): the lower index goes first, so box 0 is kept and suppresses box 2"),
    (keep_everything, r"chain.*box 1 \(score 0.8\) should be suppressed: box 0 .* overlaps it with IoU 0.4286 >"),
])
def test_nms_mistakes_are_named(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_nms(fn)


def test_equal_scores_out_of_order_are_named():
    # ties broken the other way among boxes that do not overlap: the same boxes kept, in another order
    def ties_last_among_kept(boxes, scores, iou_threshold):
        keep = nms_with(boxes, scores, iou_threshold)
        return keep.flip(0) if len(keep) == 2 and scores[keep[0]] == scores[keep[1]] else keep

    with pytest.raises(AssertionError, match=r"equal scores \(0.5\): the lower index comes first, box 0 before box 1"):
        check_nms(ties_last_among_kept)

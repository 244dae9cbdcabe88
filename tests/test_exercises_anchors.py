"""frcnn_edu.exercises.anchors: the checks of notebook 04's exercises pass the package's functions and the
notebook's solutions, stop each usual mistake with the message that names it, and let NotImplementedError through
(the student copy's placeholder)."""
import math
import re

import pytest
import torch

from frcnn_edu.anchors import AnchorGenerator
from frcnn_edu.exercises.anchors import check_anchors, check_box_iou
from frcnn_edu.ops import box_iou


def not_done(*args):
    raise NotImplementedError("your code here: replace this line")


# ---- box IoU ----------------------------------------------------------------------------------------------------

def notebook_box_iou(boxes1, boxes2):
    """The notebook's solution, written again."""
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    sides = (bottom_right - top_left).clamp(min=0)
    inter = sides[..., 0] * sides[..., 1]  # [N, M]
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # [N]
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # [M]
    return inter / (area1[:, None] + area2[None, :] - inter)


def iou_with(plus=0.0, clamp=True, corners=(torch.maximum, torch.minimum),
             union=lambda area1, area2, inter: area1 + area2 - inter):
    """An IoU written with one mistake: +1 on the sides, no clamp, other corners, another denominator."""
    def iou(boxes1, boxes2):
        top_left = corners[0](boxes1[:, None, :2], boxes2[None, :, :2])
        bottom_right = corners[1](boxes1[:, None, 2:], boxes2[None, :, 2:])
        sides = bottom_right - top_left + plus
        inter = (sides.clamp(min=0) if clamp else sides).prod(dim=2)
        area1 = (boxes1[:, 2:] - boxes1[:, :2] + plus).prod(dim=1)
        area2 = (boxes2[:, 2:] - boxes2[:, :2] + plus).prod(dim=1)
        return inter / union(area1[:, None], area2[None, :], inter)
    return iou


def iou_in_a_loop(boxes1, boxes2):
    """Right values, but built from a list: no boxes1 gives shape (0,), not (0, M)."""
    return torch.tensor([[float(box_iou(a[None], b[None])) for b in boxes2] for a in boxes1])


@pytest.mark.parametrize("fn", [box_iou, notebook_box_iou, iou_with()], ids=["package", "notebook", "variant_off"])
def test_box_iou_check_passes_right_answers(fn):
    assert check_box_iou(fn) == "box_iou: 9 hand-made and 50 random cases agree with frcnn_edu.ops.box_iou"


TOUCHING = ('hand-made case "boxes touching at an edge or a corner, IoU 0", boxes1 = [[0.0, 0.0, 10.0, 10.0]], '
            'boxes2 = [[10.0, 0.0, 20.0, 10.0], [0.0, 10.0, 10.0, 20.0], [10.0, 10.0, 20.0, 20.0]]: ')


@pytest.mark.parametrize("fn, fragments", [
    (lambda b1, b2: box_iou(b1, b2).tolist(), ["the function must return a torch.Tensor, got list"]),
    (lambda b1, b2: box_iou(b2, b1), [TOUCHING + "wrong shape: expected [N, M] = (1, 3), got (3, 1) (transposed: row "
                                                 "i is boxes1[i], column j is boxes2[j])"]),
    (lambda b1, b2: box_iou(b1, b2).flatten(), ["wrong shape: expected [N, M] = (1, 1), got (1,)"]),
    (iou_in_a_loop, ['"no boxes1: a [0, M] result"', "wrong shape: expected [N, M] = (0, 2), got (0,)"]),
    (lambda b1, b2: box_iou(b1.float(), b2.float()),
     ['"float64 boxes: a float64 result"', "wrong dtype: expected torch.float64, got torch.float32"]),
    (iou_with(plus=1.0), ['"[0, 0, 2, 2] and [1, 1, 3, 3], IoU 1/7"', "widths and heights have a +1"]),
    (iou_with(clamp=False), ['"disjoint boxes, IoU 0"', "not clamped at 0"]),
    (iou_with(corners=(torch.minimum, torch.maximum)), ["min and max swapped for the intersection's corners"]),
    (iou_with(union=lambda a1, a2, inter: a1 + a2), ["the union counts the intersection twice"]),
    (iou_with(union=lambda a1, a2, inter: torch.minimum(a1, a2)),  # intersection over the smaller box
     ["IoU of boxes1[0] = [0.0, 0.0, 2.0, 2.0] and boxes2[0] = [1.0, 1.0, 3.0, 3.0]: expected 0.142857, got 0.25"]),
])
def test_box_iou_check_names_the_mistake(fn, fragments):
    with pytest.raises(AssertionError, match=".*".join(map(re.escape, fragments))):
        check_box_iou(fn)


def test_box_iou_check_passes_not_implemented_through():
    with pytest.raises(NotImplementedError, match="your code here"):
        check_box_iou(not_done)


# ---- anchors ----------------------------------------------------------------------------------------------------

def notebook_anchors(sizes, ratios, feature_size, stride):
    """The notebook's solution, written again."""
    half_sides = [(s / math.sqrt(r) / 2, s * math.sqrt(r) / 2) for r in ratios for s in sizes]  # ratio-major
    cell_anchors = torch.tensor([(-w, -h, w, h) for w, h in half_sides])  # [A, 4]
    height, width = feature_size
    centre_y = (torch.arange(height) + 0.5) * stride  # [Hf]
    centre_x = (torch.arange(width) + 0.5) * stride  # [Wf]
    cy, cx = torch.meshgrid(centre_y, centre_x, indexing="ij")  # [Hf, Wf] each
    centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)  # [Hf*Wf, 1, 4]
    return (centres + cell_anchors[None]).reshape(-1, 4)  # [Hf*Wf*A, 4]


def package_anchors(sizes, ratios, feature_size, stride):
    return AnchorGenerator(sizes, ratios, stride)(feature_size)


def grid_by_hand(sizes, ratios, feature_size, stride, sides=None, centre=None, round_cell=False):
    """[Hf, Wf, R, S, 4] anchors, loop by loop; sides(s, r) -> (w, h) and centre(i) -> px are the knobs."""
    sides = sides or (lambda s, r: (s / math.sqrt(r), s * math.sqrt(r)))
    centre = centre or (lambda i: (i + 0.5) * stride)
    height, width = feature_size
    grid = torch.zeros(height, width, len(ratios), len(sizes), 4)
    for y in range(height):
        for x in range(width):
            for i, r in enumerate(ratios):
                for j, s in enumerate(sizes):
                    w, h = sides(s, r)
                    half = torch.tensor([-w / 2, -h / 2, w / 2, h / 2])
                    grid[y, x, i, j] = torch.tensor([centre(x), centre(y)] * 2) + (half.round() if round_cell else half)
    return grid


def by_hand(dims=(0, 1, 2, 3), then=lambda anchors, stride: anchors, **knobs):
    """An anchor function from grid_by_hand: its dims permuted before flattening, then `then` applied."""
    def anchors(sizes, ratios, feature_size, stride):
        grid = grid_by_hand(sizes, ratios, feature_size, stride, **knobs)
        return then(grid.permute(*dims, 4).reshape(-1, 4), stride)
    return anchors


@pytest.mark.parametrize("fn", [package_anchors, notebook_anchors, by_hand()], ids=["package", "notebook", "loops"])
def test_anchors_check_passes_right_answers(fn):
    assert check_anchors(fn) == ("anchors: 6 hand-made and 30 random cases agree with "
                                 "frcnn_edu.anchors.AnchorGenerator")


FIRST_CASE = ("anchors, hand-made case \"the paper's anchors on 2 rows and 3 columns\", sizes=(128.0, 256.0, 512.0), "
              "ratios=(0.5, 1.0, 2.0), feature_size=(2, 3), stride=16: ")


@pytest.mark.parametrize("fn, message", [
    (by_hand(then=lambda a, stride: a.tolist()), FIRST_CASE + "the function must return a torch.Tensor, got list"),
    (lambda sizes, ratios, feature_size, stride: package_anchors(sizes, ratios, feature_size, stride).view(
        *feature_size, -1, 4), FIRST_CASE + "wrong shape: expected [Hf * Wf * A, 4] with A = 3 sizes * 3 ratios = "
                                            "(54, 4), got (2, 3, 9, 4) (flatten it: reshape(-1, 4), cell by cell)"),
    (by_hand(then=lambda a, stride: a.T), "got (4, 54) (transposed: one row per anchor)"),
    (lambda sizes, ratios, feature_size, stride: package_anchors(sizes, ratios, (1, 1), stride),
     "wrong shape: expected [Hf * Wf * A, 4] with A = 3 sizes * 3 ratios = (54, 4), got (9, 4)"),
    (by_hand(then=lambda a, stride: a.double()), "wrong dtype: expected torch.float32, got torch.float64"),
    (by_hand(sides=lambda s, r: (s * math.sqrt(r), s / math.sqrt(r))), FIRST_CASE + "ratio taken as w / h"),
    (by_hand(then=lambda a, stride: a[:, [1, 0, 3, 2]]), FIRST_CASE + "x and y swapped"),
    (lambda sizes, ratios, feature_size, stride: package_anchors(sizes, ratios, feature_size[::-1], stride),
     FIRST_CASE + "feature_size read as (Wf, Hf)"),
    (by_hand(centre=lambda i: i * 16), FIRST_CASE + "anchors centred on the cell's top-left corner"),
    (by_hand(centre=lambda i: i * 16 + 7.5), FIRST_CASE + "centres 0.5 px up and left (py-faster-rcnn's"),
    (by_hand(then=lambda a, stride: a / stride), FIRST_CASE + "anchors in feature cells"),
    (by_hand(round_cell=True), FIRST_CASE + "anchors rounded to whole pixels (as torchvision's)"),
    (by_hand(then=lambda a, stride: a.round()), FIRST_CASE + "anchors rounded to whole pixels (as torchvision's)"),
    (by_hand(dims=(0, 1, 3, 2)), FIRST_CASE + "anchors of a cell ordered size-major"),
    (by_hand(dims=(1, 0, 2, 3)), FIRST_CASE + "cells ordered column by column"),
    (by_hand(dims=(2, 3, 0, 1)), FIRST_CASE + "anchor-major order"),
    (by_hand(then=lambda a, stride: a[:, [2, 3, 0, 1]]),
     FIRST_CASE + "anchor 0 (cell (y, x) = (0, 0), ratio 0.5, size 128.0) has x2 <= x1 or y2 <= y1"),
    (by_hand(sides=lambda s, r: (s, s * r)),
     FIRST_CASE + "anchor 0 (cell (y, x) = (0, 0), ratio 0.5, size 128.0) has the wrong area: 8192, expected s² = "
                  "16384 (every ratio keeps the area"),
    (by_hand(sides=lambda s, r: (s / r ** 0.25, s * r ** 0.25)),
     FIRST_CASE + "anchor 0 (cell (y, x) = (0, 0), ratio 0.5, size 128.0) has the wrong h / w: 0.707107, expected "
                  "r = 0.5"),
    (by_hand(centre=lambda i: (i + 1.5) * 16),
     FIRST_CASE + "anchor 0 (cell (y, x) = (0, 0), ratio 0.5, size 128.0): expected [-82.51, -37.25, 98.51, 53.25], "
                  "got [-66.51, -21.25, 114.51, 69.25]; its centre is [24.0, 24.0], its cell's is ((x + 0.5) * 16, "
                  "(y + 0.5) * 16) = [8.0, 8.0]"),
])
def test_anchors_check_names_the_mistake(fn, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_anchors(fn)


def test_anchors_check_passes_not_implemented_through():
    with pytest.raises(NotImplementedError, match="your code here"):
        check_anchors(not_done)

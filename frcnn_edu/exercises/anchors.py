"""Checks for notebook 04's exercises: pairwise box IoU (the overlap every anchor is judged by, Faster R-CNN
§3.1.2) and the anchor grid (§3.1.1, §3.3).

check_box_iou(fn): fn(boxes1 [N, 4], boxes2 [M, 4]) -> [N, M], compared with frcnn_edu.ops.box_iou.
check_anchors(fn): fn(sizes, ratios, feature_size, stride) -> [Hf * Wf * A, 4] xyxy image px, compared with
frcnn_edu.anchors.AnchorGenerator(sizes, ratios, stride)(feature_size).

Each runs hand-made cases (the boundaries where students go wrong) and then seeded random ones. On the first case
that disagrees it raises AssertionError saying what is wrong, in this order: the output's type, shape and dtype;
then a known mistake, recognised by computing it on the same case (the +1 pixel convention, an unclamped
intersection, ratio taken as w / h, corners instead of centres, another order of cells or anchors ...); then a
rule the values break (an anchor's area or h / w), and last the first value that differs. Errors raised by fn
(NotImplementedError while the exercise is not done) go through unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..anchors import AnchorGenerator, base_anchors, grid_anchors
from ..ops import box_iou

IoUFunction = Callable[[Tensor, Tensor], Tensor]
AnchorFunction = Callable[[tuple[float, ...], tuple[float, ...], tuple[int, int], int], Tensor]
RANDOM_IOU_CASES, RANDOM_ANCHOR_CASES = 50, 30
# float32 rounding: IoUs are in [0, 1]; anchors reach about 1000 px, where one float32 step is 6e-5 px
IOU_ATOL, ANCHOR_ATOL = 1e-6, 1e-3


def _differs(got: Tensor, expected: Tensor, atol: float) -> Tensor:
    """Elementwise: True where got and expected (same shape) differ by more than float32 rounding."""
    return ~torch.isclose(got.double(), expected.double(), rtol=1e-5, atol=atol, equal_nan=True)


def _close(got: Tensor, expected: Tensor, atol: float) -> bool:
    return got.shape == expected.shape and not _differs(got, expected, atol).any()


def _check_form(got: object, expected: Tensor, what: str, where: str, shape_hints: dict[tuple, str]) -> Tensor:
    """AssertionError unless got is a tensor of expected's shape and dtype. shape_hints: wrong shape -> what it
    suggests (a transposed result, say)."""
    if not isinstance(got, Tensor):
        raise AssertionError(f"{where}: the function must return a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        hint = shape_hints.get(tuple(got.shape), "")
        raise AssertionError(f"{where}: wrong shape: expected {what} {tuple(expected.shape)}, "
                             f"got {tuple(got.shape)}{hint}")
    if got.dtype != expected.dtype:
        raise AssertionError(f"{where}: wrong dtype: expected {expected.dtype}, got {got.dtype}")
    return got


def _known_mistake(got: Tensor, expected: Tensor, mistakes: list[tuple[str, Tensor]], where: str,
                   atol: float) -> None:
    """AssertionError naming the first mistake whose result on this case got equals (and the right answer does not)."""
    for message, result in mistakes:
        if _close(got, result, atol) and not _close(result, expected, atol):
            raise AssertionError(f"{where}: {message}")


# ---- box IoU ----------------------------------------------------------------------------------------------------

def _boxes(rows: list[list[float]], dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.tensor(rows, dtype=dtype).reshape(-1, 4)  # [] -> [0, 4]


def _iou_cases() -> list[tuple[str, Tensor, Tensor]]:
    """Hand-made (name, boxes1, boxes2), each a boundary where an IoU goes wrong."""
    square = [[0, 0, 10, 10]]
    return [
        ("[0, 0, 2, 2] and [1, 1, 3, 3], IoU 1/7", _boxes([[0, 0, 2, 2]]), _boxes([[1, 1, 3, 3]])),
        ("identical boxes, IoU 1", _boxes([[10, 20, 50, 40]]), _boxes([[10, 20, 50, 40]])),
        ("boxes touching at an edge or a corner, IoU 0", _boxes(square),
         _boxes([[10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20]])),
        ("a box inside another, IoU = small area / big area", _boxes([[0, 0, 100, 100]]),
         _boxes([[25, 25, 75, 75], [0, 0, 100, 50]])),
        ("disjoint boxes, IoU 0", _boxes(square), _boxes([[20, 30, 40, 50], [-40, -50, -20, -30], [0, 20, 10, 30]])),
        ("2 and 3 boxes in feature cells, a [2, 3] result", _boxes([[0.5, 0.5, 3.25, 2], [1, 0, 2, 4]]),
         _boxes([[0, 0, 2, 2], [1.5, 1, 4, 3.5], [0.75, 0.25, 1.25, 3.75]])),
        ("no boxes1: a [0, M] result", _boxes([]), _boxes([[0, 0, 4, 4], [1, 1, 2, 2]])),
        ("no boxes2: a [N, 0] result", _boxes([[0, 0, 4, 4]]), _boxes([])),
        ("float64 boxes: a float64 result", _boxes([[0, 0, 3, 3], [1, 2, 5, 4]], torch.float64),
         _boxes([[2, 1, 4, 3]], torch.float64)),
    ]


def _random_boxes(count: int, dtype: torch.dtype, generator: torch.Generator) -> Tensor:
    """[count, 4] xyxy boxes on a quarter-pixel grid in a 64 px square: shared edges, nesting and equal boxes occur."""
    corner = torch.randint(0, 192, (count, 2), generator=generator)
    size = torch.randint(1, 96, (count, 2), generator=generator)
    return (torch.cat([corner, corner + size], dim=1) / 4).to(dtype)


def _iou_variant(boxes1: Tensor, boxes2: Tensor, *, plus: float = 0.0, clamp: bool = True, enclosing: bool = False,
                 union_minus_inter: bool = True) -> Tensor:
    """[N, M] IoU computed with one of the usual mistakes switched on (all off: the right rule)."""
    first, second = (torch.minimum, torch.maximum) if enclosing else (torch.maximum, torch.minimum)
    top_left = first(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = second(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    sides = bottom_right - top_left + plus
    sides = sides.clamp(min=0) if clamp else sides
    inter = sides[..., 0] * sides[..., 1]  # [N, M]
    area1 = (boxes1[:, 2:] - boxes1[:, :2] + plus).prod(dim=1)  # [N]
    area2 = (boxes2[:, 2:] - boxes2[:, :2] + plus).prod(dim=1)  # [M]
    union = area1[:, None] + area2[None, :] - (inter if union_minus_inter else 0)
    return inter / union


def _iou_mistakes(boxes1: Tensor, boxes2: Tensor) -> list[tuple[str, Tensor]]:
    return [
        ("widths and heights have a +1 (the VOC devkit's inclusive pixels); boxes here are continuous, "
         "area = (x2 - x1) * (y2 - y1), so boxes that touch share no area", _iou_variant(boxes1, boxes2, plus=1.0)),
        ("the intersection's width and height are not clamped at 0: boxes that do not overlap give negative sides, "
         "and two negatives multiply to a positive area", _iou_variant(boxes1, boxes2, clamp=False)),
        ("min and max swapped for the intersection's corners (that is the box enclosing both): the intersection "
         "runs from the larger x1 and y1 to the smaller x2 and y2", _iou_variant(boxes1, boxes2, enclosing=True)),
        ("the union counts the intersection twice: union = area1 + area2 - intersection",
         _iou_variant(boxes1, boxes2, union_minus_inter=False)),
    ]


def _compare_iou(fn: IoUFunction, boxes1: Tensor, boxes2: Tensor, case: str) -> None:
    """AssertionError saying what is wrong unless fn(boxes1, boxes2) equals box_iou on this case."""
    where = f"box_iou, {case}, boxes1 = {boxes1.tolist()}, boxes2 = {boxes2.tolist()}"
    expected = box_iou(boxes1, boxes2)  # [N, M]
    transposed = {expected.shape[::-1]: " (transposed: row i is boxes1[i], column j is boxes2[j])"}
    got = _check_form(fn(boxes1.clone(), boxes2.clone()), expected, "[N, M] =", where, transposed)
    if _close(got, expected, IOU_ATOL):
        return
    _known_mistake(got, expected, _iou_mistakes(boxes1, boxes2), where, IOU_ATOL)
    i, j = [int(k) for k in _differs(got, expected, IOU_ATOL).nonzero()[0]]
    raise AssertionError(f"{where}: IoU of boxes1[{i}] = {boxes1[i].tolist()} and boxes2[{j}] = {boxes2[j].tolist()}"
                         f": expected {expected[i, j].item():.6g}, got {got[i, j].item():.6g}")


def check_box_iou(fn: IoUFunction) -> str:
    """Compare fn(boxes1, boxes2) with frcnn_edu.ops.box_iou on hand-made and seeded random cases.

    Args:
        fn: the student's IoU. boxes1: [N, 4], boxes2: [M, 4], xyxy, continuous, same frame, float32 or float64.
            Must return [N, M] in the boxes' dtype, entry (i, j) the IoU of boxes1[i] and boxes2[j].

    Returns:
        A one-line summary of the cases that agree. Raises AssertionError at the first case that does not, saying
        what is wrong (shape, dtype, the +1 convention, an unclamped intersection ...) and with the case's boxes.
    """
    cases = _iou_cases()
    for name, boxes1, boxes2 in cases:
        _compare_iou(fn, boxes1, boxes2, f'hand-made case "{name}"')
    generator = torch.Generator().manual_seed(0)
    for k in range(RANDOM_IOU_CASES):
        n, m = torch.randint(0, 7, (2,), generator=generator).tolist()
        dtype = torch.float64 if k % 5 == 4 else torch.float32
        boxes1, boxes2 = _random_boxes(n, dtype, generator), _random_boxes(m, dtype, generator)
        _compare_iou(fn, boxes1, boxes2, f"random case {k}")
    return (f"box_iou: {len(cases)} hand-made and {RANDOM_IOU_CASES} random cases agree with "
            f"frcnn_edu.ops.box_iou")


# ---- anchors ----------------------------------------------------------------------------------------------------

def _anchor_cases() -> list[tuple[str, tuple[float, ...], tuple[float, ...], tuple[int, int], int]]:
    """Hand-made (name, sizes, ratios, feature_size, stride), each a convention an anchor grid can get wrong. The
    first has rows != columns and off-diagonal centres, so that each mistake in _anchor_mistakes gives a different
    result there (on one cell at (8, 8), swapping x and y looks like taking the ratio as w / h)."""
    paper_sizes, paper_ratios = (128.0, 256.0, 512.0), (0.5, 1.0, 2.0)
    return [
        ("the paper's anchors on 2 rows and 3 columns", paper_sizes, paper_ratios, (2, 3), 16),
        ("the paper's 9 anchors of one cell", paper_sizes, paper_ratios, (1, 1), 16),
        ("ratios 0.25, 1, 3: r is h / w", (64.0,), (0.25, 1.0, 3.0), (1, 1), 16),
        ("the tiny preset's 4 sizes on 3 rows and 2 columns", (24.0, 48.0, 96.0, 160.0), paper_ratios, (3, 2), 16),
        ("sizes and ratios in the order given, not sorted", (256.0, 64.0), (2.0, 0.5), (2, 2), 16),
        ("stride 32 on one column", (100.0,), (1.0, 1.5), (4, 1), 32),
    ]


def _random_anchor_case(generator: torch.Generator) -> tuple:
    """(sizes, ratios, feature_size, stride): 1 to 3 sizes (8 to 512 px) and ratios (1/4 to 4), rounded to print
    well, a map of up to 6 x 6 cells, a stride of 4 to 32 px."""
    num_sizes, num_ratios = torch.randint(1, 4, (2,), generator=generator).tolist()
    height, width = torch.randint(1, 7, (2,), generator=generator).tolist()
    sizes = tuple(round(s, 1) for s in (8 + 504 * torch.rand(num_sizes, generator=generator)).tolist())
    ratios = tuple(round(r, 2) for r in (2 ** (4 * torch.rand(num_ratios, generator=generator) - 2)).tolist())
    stride = (4, 8, 16, 32)[int(torch.randint(0, 4, (1,), generator=generator))]
    return sizes, ratios, (height, width), stride


def _anchor_mistakes(sizes: tuple[float, ...], ratios: tuple[float, ...], feature_size: tuple[int, int],
                     stride: int) -> list[tuple[str, Tensor]]:
    """What the usual mistakes give on this case, each with the message that names it."""
    height, width = feature_size
    cell = base_anchors(sizes, ratios)  # [A, 4]
    expected = grid_anchors(cell, feature_size, stride)  # [Hf*Wf*A, 4]
    grid = expected.view(height, width, len(ratios), len(sizes), 4)
    return [
        ("ratio taken as w / h: it is h / w, so w = s / sqrt(r) and h = s * sqrt(r)",
         grid_anchors(base_anchors(sizes, tuple(1 / r for r in ratios)), feature_size, stride)),
        ("x and y swapped: boxes are (x1, y1, x2, y2), x the column", expected[:, [1, 0, 3, 2]]),
        ("feature_size read as (Wf, Hf): it is (Hf, Wf), rows first",
         grid_anchors(cell, (width, height), stride)),
        ("anchors centred on the cell's top-left corner (x * stride, y * stride): centre them on the cell, "
         "((x + 0.5) * stride, (y + 0.5) * stride)", expected - stride / 2),
        ("centres 0.5 px up and left (py-faster-rcnn's (stride - 1) / 2, for 1-based inclusive pixels): here cell x "
         "covers [x * stride, (x + 1) * stride), centre (x + 0.5) * stride", expected - 0.5),
        ("anchors in feature cells: they are in image px (feature cell * stride)", expected / stride),
        ("anchors rounded to whole pixels (as torchvision's): keep w = s / sqrt(r) and h = s * sqrt(r) exact",
         grid_anchors(cell.round(), feature_size, stride)),
        ("anchors of a cell ordered size-major: the order is ratio-major, for each ratio every size",
         grid.transpose(2, 3).reshape(-1, 4)),  # [Hf, Wf, S, R, 4] -> [M, 4]
        ("cells ordered column by column: the order is row by row, (y, x), like the RPN's outputs",
         grid.transpose(0, 1).reshape(-1, 4)),  # [Wf, Hf, R, S, 4] -> [M, 4]
        ("anchor-major order (every cell's first anchor, then every cell's second ...): all A anchors of a cell "
         "come together, cell by cell", grid.permute(2, 3, 0, 1, 4).reshape(-1, 4)),  # [R, S, Hf, Wf, 4]
    ]


def _px(values: Tensor) -> list[float]:
    """Values rounded to 0.01 px, to print."""
    return [round(v, 2) for v in values.tolist()]


def _anchor_name(k: int, sizes: tuple[float, ...], ratios: tuple[float, ...], width: int) -> str:
    """'anchor k (cell (y, x), ratio r, size s)' from its index in the (y, x, ratio, size) order."""
    cell, a = divmod(k, len(sizes) * len(ratios))
    ratio, size = ratios[a // len(sizes)], sizes[a % len(sizes)]
    return f"anchor {k} (cell (y, x) = {divmod(cell, width)}, ratio {ratio}, size {size})"


def _broken_rule(got: Tensor, expected: Tensor, sizes: tuple[float, ...], ratios: tuple[float, ...],
                 feature_size: tuple[int, int], stride: int) -> str:
    """The first rule an anchor of got breaks (corner order, area s², h / w = r), else its first wrong value and
    its centre against its cell's."""
    (w, h), (w_ref, h_ref) = [(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]) for t in (got, expected)]  # [M] each
    rules = [
        ((w > 0) & (h > 0), "has x2 <= x1 or y2 <= y1: xyxy is (left, top, right, bottom)", lambda k: ""),
        (torch.isclose(w * h, w_ref * h_ref, rtol=1e-4), "has the wrong area",
         lambda k: f": {w[k] * h[k]:.6g}, expected s² = {w_ref[k] * h_ref[k]:.6g} (every ratio keeps the area: "
                   f"w = s / sqrt(r), h = s * sqrt(r))"),
        (torch.isclose(h / w, h_ref / w_ref, rtol=1e-4), "has the wrong h / w",
         lambda k: f": {h[k] / w[k]:.6g}, expected r = {h_ref[k] / w_ref[k]:.6g}"),
    ]
    for holds, broken, detail in rules:
        if not holds.all():
            k = int((~holds).nonzero()[0])
            return f"{_anchor_name(k, sizes, ratios, feature_size[1])} {broken}{detail(k)}"
    k = int(_differs(got, expected, ANCHOR_ATOL).any(dim=1).nonzero()[0])
    centre, cell_centre = [_px((t[k, :2] + t[k, 2:]) / 2) for t in (got, expected)]
    return (f"{_anchor_name(k, sizes, ratios, feature_size[1])}: expected {_px(expected[k])}, "
            f"got {_px(got[k])}; its centre is {centre}, its cell's is "
            f"((x + 0.5) * {stride}, (y + 0.5) * {stride}) = {cell_centre}")


def _compare_anchors(fn: AnchorFunction, sizes: tuple[float, ...], ratios: tuple[float, ...],
                     feature_size: tuple[int, int], stride: int, case: str) -> None:
    """AssertionError saying what is wrong unless fn's anchors equal AnchorGenerator's on this case."""
    where = f"anchors, {case}, sizes={sizes}, ratios={ratios}, feature_size={feature_size}, stride={stride}"
    expected = AnchorGenerator(sizes, ratios, stride)(feature_size)  # [Hf*Wf*A, 4]
    what = f"[Hf * Wf * A, 4] with A = {len(sizes)} sizes * {len(ratios)} ratios ="
    hints = {(*feature_size, len(sizes) * len(ratios), 4): " (flatten it: reshape(-1, 4), cell by cell)",
             expected.shape[::-1]: " (transposed: one row per anchor)"}
    got = _check_form(fn(sizes, ratios, feature_size, stride), expected, what, where, hints)
    if _close(got, expected, ANCHOR_ATOL):
        return
    _known_mistake(got, expected, _anchor_mistakes(sizes, ratios, feature_size, stride), where, ANCHOR_ATOL)
    raise AssertionError(f"{where}: {_broken_rule(got, expected, sizes, ratios, feature_size, stride)}")


def check_anchors(fn: AnchorFunction) -> str:
    """Compare fn(sizes, ratios, feature_size, stride) with frcnn_edu.anchors.AnchorGenerator on hand-made and
    seeded random cases.

    Args:
        fn: the student's anchor grid. sizes: tuple of anchor sizes s (sqrt of the area) in image px; ratios:
            tuple of aspect ratios r = h / w; feature_size: (Hf, Wf); stride: image px per feature cell (int).
            Must return [Hf * Wf * A, 4] float32, xyxy, image px, A = len(sizes) * len(ratios), ordered by row,
            column, ratio, size, each anchor centred on its cell ((x + 0.5) * stride, (y + 0.5) * stride).

    Returns:
        A one-line summary of the cases that agree. Raises AssertionError at the first case that does not, saying
        what is wrong (shape, dtype, ratio as w / h, the centre, the order, an area ...) with the case's arguments.
    """
    cases = _anchor_cases()
    for name, *arguments in cases:
        _compare_anchors(fn, *arguments, case=f'hand-made case "{name}"')
    generator = torch.Generator().manual_seed(0)
    for k in range(RANDOM_ANCHOR_CASES):
        _compare_anchors(fn, *_random_anchor_case(generator), case=f"random case {k}")
    return (f"anchors: {len(cases)} hand-made and {RANDOM_ANCHOR_CASES} random cases agree with "
            f"frcnn_edu.anchors.AnchorGenerator")

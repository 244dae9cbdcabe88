"""Checks for notebook 03's exercises: RoI projection (image px -> whole feature cells) and RoI max pooling
(Fast R-CNN §2.1), both with torchvision's rules as frcnn_edu.ops.roi_pool states and implements them.

check_roi_projection(fn): fn(boxes [K, 4] xyxy image px, spatial_scale) -> [K, 4] int64 feature cells,
compared with the rounding inside frcnn_edu.ops.roi_pool, round_half_away_from_zero(boxes * spatial_scale).
check_roi_max_pool(fn): fn(features [C, H, W], boxes [K, 4] xyxy image px, (PH, PW), spatial_scale)
-> [K, C, PH, PW], compared with frcnn_edu.ops.roi_pool on the same image.

Each runs hand-made cases (the boundaries where students go wrong: ties at a half, the inclusive end cell, a
zero-size RoI, RoIs across or beyond the map's edge, a bin edge that float32 moves) and then seeded random ones.
RoI pooling is compared twice: on the case's values, and on a one-hot map (channel y * W + x is 1 at cell
(y, x) only), where a bin's output says exactly which cells it read. On the first case that disagrees the
check raises AssertionError saying what is wrong, in this order: the output's type, shape and dtype; the first
box (or bin) that differs, with what was expected and what came back; and the mistake, where one is recognised
by computing it on the same case (halves to even, corners rounded down, image px left unscaled, x and y
swapped, the end cell off by one, bin edges in exact arithmetic, an empty bin that is not 0). Errors raised by
fn (NotImplementedError while the exercise is not done) go through unchanged.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..ops import roi_pool
from ..ops.roi_pool import round_half_away_from_zero

ProjectionFunction = Callable[[Tensor, float], Tensor]
PoolFunction = Callable[[Tensor, Tensor, tuple[int, int], float], Tensor]

# What the checks say: a mistake each, recognised by giving the student's result on the same case; then the rules.
UNSCALED = ("the corners are still in image px: multiply by spatial_scale ({scale:g} feature cells per image px) "
            "to reach feature cells")
DIVIDED = "image px divided by spatial_scale: feature cells = image px * spatial_scale"
HALF_TO_EVEN = ("a tie broken the other way: torch.round (and Python's round) send a half to the even cell, "
                "2.5 -> 2; torchvision's kernel uses C's round, halves away from zero: 2.5 -> 3, 0.5 -> 1")
HALF_UP = ("a negative half broken the wrong way: floor(v + 0.5) sends -0.5 to 0 and -2.5 to -2; C's round "
           "sends halves away from zero: -0.5 -> -1, -2.5 -> -3")
ROUNDED_DOWN = ("corners rounded down (floor, trunc or .long() drop the fraction): round to the nearest cell, "
                "halves away from zero (7.8125 -> 8)")
SWAPPED = "x and y swapped: corners are (x1, y1, x2, y2), as in the boxes; x runs along W, y along H"
END_PAST = ("the end cell off by one: x2, y2 are the RoI's last cells, rounded like x1, y1 and read inclusively; "
            "do not add 1")
END_BEFORE = ("the end cell off by one: x2, y2 are rounded like x1, y1 and the cell they land on is the RoI's last "
              "(inclusive); do not subtract 1")
END_EXCLUSIVE = ("the end cell off by one: the RoI covers cells x1..x2 with x2 included, so it is x2 - x1 + 1 "
                 "cells wide (rule 2), at least 1")
EXACT_EDGES = ("bin edges in exact arithmetic: torchvision's kernel computes the bin size (roi_h / PH, roi_w / PW) "
               "in the map's dtype (float32), where {p} * ({length} / {pooled}) = {product!r}, not {exact:g}, so "
               "floor or ceil moves a bin edge by a cell: make the bin size a tensor of features.dtype")
RULE_PROJECTION = "rule: corner * spatial_scale, rounded to the nearest cell with halves away from zero"
RULE_BINS = ("rule: bin p spans [floor(p * bin), ceil((p + 1) * bin)) cells from the RoI's first cell, with "
             "bin = cells / P and the end cell counted, clipped to the map")


def _text(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _call(fn: Callable, name: str, *args: object) -> object:
    """fn(*args) on copies of the tensors, AssertionError if fn changed a copy in place (the checks reuse them)."""
    copies = [a.clone() if isinstance(a, Tensor) else a for a in args]
    got = fn(*copies)
    for position, (arg, copy) in enumerate(zip(args, copies)):
        if isinstance(arg, Tensor) and not torch.equal(arg, copy):
            raise AssertionError(f"{name} changed its argument {position + 1} in place: work on new tensors "
                                 f"(boxes * spatial_scale, not boxes *= spatial_scale or an op ending in _)")
    return got


def _check_form(got: object, expected: Tensor, where: str, shape_name: str, dtype_hint: str) -> Tensor:
    """AssertionError unless got is a tensor of expected's shape and dtype."""
    if not isinstance(got, Tensor):
        raise AssertionError(f"{where}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise AssertionError(f"{where}: wrong shape: expected {shape_name} = {tuple(expected.shape)}, "
                             f"got {tuple(got.shape)}")
    if got.dtype != expected.dtype:
        raise AssertionError(f"{where}: wrong dtype: expected {expected.dtype}{dtype_hint}, got {got.dtype}")
    return got


# ---- RoI projection ---------------------------------------------------------------------------------------------

def expected_cells(boxes: Tensor, spatial_scale: float) -> Tensor:
    """Image px -> feature cells, as frcnn_edu.ops.roi_pool projects each RoI before pooling it.

    Args:
        boxes: [K, 4] float32, xyxy, image px. spatial_scale: feature cells per image px.

    Returns:
        [K, 4] int64 (x1, y1, x2, y2) feature cells: boxes * spatial_scale in the boxes' dtype, rounded with
        halves away from zero; x2, y2 are the last cells read (inclusive).
    """
    return round_half_away_from_zero(boxes * spatial_scale).long()


def _projection_mistakes(boxes: Tensor, spatial_scale: float) -> list[tuple[str, Tensor]]:
    """(message, what that mistake returns) on these boxes: [K, 4] each, int64."""
    scaled = boxes * spatial_scale  # [K, 4] feature cells, continuous
    cells = expected_cells(boxes, spatial_scale)
    end = torch.tensor([0, 0, 1, 1])
    return [(UNSCALED.format(scale=spatial_scale), round_half_away_from_zero(boxes).long()),
            (DIVIDED, round_half_away_from_zero(boxes / spatial_scale).long()),
            (HALF_TO_EVEN, torch.round(scaled).long()), (HALF_UP, torch.floor(scaled + 0.5).long()),
            (ROUNDED_DOWN, torch.floor(scaled).long()), (ROUNDED_DOWN, torch.trunc(scaled).long()),
            (SWAPPED, cells[:, [1, 0, 3, 2]]), (END_PAST, cells + end), (END_BEFORE, cells - end)]


def _projection_cases() -> list[tuple[str, Tensor, float]]:
    """Hand-made (name, boxes [K, 4] image px, spatial_scale), each a boundary where a projection goes wrong."""
    def boxes(rows: list[list[float]]) -> Tensor:
        return torch.tensor(rows, dtype=torch.float32)
    return [
        ("the notebook's left eye", boxes([[125, 80, 210, 150]]), 1 / 16),
        ("corners on exact halves (x / 16 = 0.5, 1.5, 2.5, 3.5)", boxes([[8, 24, 40, 56]]), 1 / 16),
        ("negative halves, a box across the image's top-left corner", boxes([[-8, -40, 8, 24]]), 1 / 16),
        ("a zero-size RoI and one smaller than a cell", boxes([[40, 40, 40, 40], [20, 20, 27, 27]]), 1 / 16),
        ("RoIs ending on a cell boundary", boxes([[0, 0, 32, 32], [16, 48, 64, 160]]), 1 / 16),
        ("d2l's RoIs at spatial_scale 0.1", boxes([[0, 0, 20, 20], [0, 10, 30, 30]]), 0.1),
        ("spatial_scale 1/2 (ties at odd px)", boxes([[3, 5, 7, 9], [1, 0, 2, 11]]), 0.5),
    ]


def _random_boxes(count: int, low: int, high: int, generator: torch.Generator) -> Tensor:
    """[count, 4] float32 xyxy with integer px corners (so 1/16 lands on halves), x1 in [low, high), x2 >= x1."""
    start = torch.randint(low, high, (count, 2), generator=generator)
    size = torch.randint(0, (high - low) // 2, (count, 2), generator=generator)
    return torch.cat([start, start + size], dim=1).float()


def _check_projection_case(fn: ProjectionFunction, name: str, boxes: Tensor, spatial_scale: float) -> None:
    where = f"roi projection, {name}"
    expected = expected_cells(boxes, spatial_scale)
    got = _check_form(_call(fn, "my_roi_projection", boxes, spatial_scale), expected, where, "[K, 4]",
                      " (whole cells: .long() after rounding)")
    if torch.equal(got, expected):
        return
    k = int((got != expected).any(dim=1).nonzero()[0])
    mistake = next((message for message, result in _projection_mistakes(boxes, spatial_scale)
                    if torch.equal(got, result) and not torch.equal(result, expected)), RULE_PROJECTION)
    scaled = (boxes[k] * spatial_scale).tolist()
    raise AssertionError(f"{where}: box {k} {_text(boxes[k].tolist())} image px at spatial_scale {spatial_scale:g} "
                         f"(times spatial_scale: {_text(scaled)}) should give cells {_text(expected[k].tolist())}, "
                         f"yours gives {_text(got[k].tolist())}: {mistake}")


def check_roi_projection(fn: ProjectionFunction, random_boxes: int = 50, seed: int = 0) -> str:
    """Check a student's RoI projection against frcnn_edu.ops.roi_pool's rounding of the scaled corners.

    Args:
        fn: fn(boxes, spatial_scale) with boxes [K, 4] float32 xyxy image px and spatial_scale a float, returning
            [K, 4] int64 (x1, y1, x2, y2) feature cells: each corner times spatial_scale, rounded to the nearest
            cell with halves away from zero (C's round), the end cell inclusive.
        random_boxes: boxes per random case (three cases: spatial_scale 1/16, 1/32 and 1/2).
        seed: seeds the random boxes (integer px, some left of or above the image).

    Returns:
        A one-line summary of the cases that passed. Raises AssertionError naming the first box that differs and
        the mistake it shows; errors raised by fn go through unchanged.
    """
    hand_made = _projection_cases()
    for name, boxes, spatial_scale in hand_made:
        _check_projection_case(fn, name, boxes, spatial_scale)
    generator = torch.Generator().manual_seed(seed)
    scales = (1 / 16, 1 / 32, 0.5)
    for spatial_scale in scales:
        boxes = _random_boxes(random_boxes, -64, 1000, generator)
        _check_projection_case(fn, f"random boxes at spatial_scale {spatial_scale:g}", boxes, spatial_scale)
    count = sum(len(boxes) for _, boxes, _ in hand_made)
    return (f"roi projection: {count} hand-made and {len(scales) * random_boxes} random boxes agree with "
            f"frcnn_edu.ops.roi_pool's cells (round_half_away_from_zero(boxes * spatial_scale))")


# ---- RoI max pooling --------------------------------------------------------------------------------------------

def _axis_bins(first: int, last: int, pooled: int, size: int, end_cell: int, float32_edges: bool) -> list[range]:
    """The cells each of `pooled` bins reads along one axis, for an RoI over cells first..last.

    end_cell: 1 counts the last cell (torchvision), 0 does not (a mistake). float32_edges: the bin size in float32,
    as torchvision's kernel, or in exact arithmetic (a mistake). Each bin is clipped to the map's [0, size).
    """
    length = max(last - first + end_cell, 1)
    if float32_edges:
        bin_size = torch.tensor(float(length)) / pooled  # float32, as the kernel
        edges = [(int(torch.floor(p * bin_size)), int(torch.ceil((p + 1) * bin_size))) for p in range(pooled)]
    else:
        edges = [(p * length // pooled, -(-(p + 1) * length // pooled)) for p in range(pooled)]
    return [range(min(max(first + lo, 0), size), min(max(first + hi, 0), size)) for lo, hi in edges]


def bins_read(cells: Tensor, output_size: tuple[int, int], map_size: tuple[int, int], end_cell: int = 1,
              float32_edges: bool = True) -> Tensor:
    """Which feature cells each bin of each RoI reads, by torchvision's bin rules (or a variant of them).

    Args:
        cells: [K, 4] int64 (x1, y1, x2, y2) feature cells, the last cells inclusive. output_size: (PH, PW).
        map_size: (H, W). end_cell, float32_edges: as _axis_bins (the defaults are torchvision's rules).

    Returns:
        [K, H * W, PH, PW] bool: [k, y * W + x, ph, pw] is True when bin (ph, pw) of RoI k reads cell (y, x),
        the layout of a pooled one-hot map.
    """
    (pooled_h, pooled_w), (height, width) = output_size, map_size
    reads = torch.zeros(len(cells), height, width, pooled_h, pooled_w, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(cells.tolist()):
        rows = _axis_bins(y1, y2, pooled_h, height, end_cell, float32_edges)
        columns = _axis_bins(x1, x2, pooled_w, width, end_cell, float32_edges)
        for ph, row_span in enumerate(rows):
            for pw, column_span in enumerate(columns):
                reads[k, row_span.start:row_span.stop, column_span.start:column_span.stop, ph, pw] = True
    return reads.view(len(cells), height * width, pooled_h, pooled_w)


def _pool_mistakes(boxes: Tensor, spatial_scale: float, output_size: tuple[int, int],
                   map_size: tuple[int, int]) -> list[tuple[str, Tensor]]:
    """(message, the cells each bin would read) for each recognised mistake: [K, H * W, PH, PW] bool, as bins_read."""
    scaled = boxes * spatial_scale
    cells = expected_cells(boxes, spatial_scale)
    return [(UNSCALED.format(scale=spatial_scale), bins_read(round_half_away_from_zero(boxes).long(), output_size,
                                                             map_size)),
            (SWAPPED, bins_read(cells[:, [1, 0, 3, 2]], output_size, map_size)),
            (HALF_TO_EVEN, bins_read(torch.round(scaled).long(), output_size, map_size)),
            (HALF_UP, bins_read(torch.floor(scaled + 0.5).long(), output_size, map_size)),
            (ROUNDED_DOWN, bins_read(torch.floor(scaled).long(), output_size, map_size)),
            (END_EXCLUSIVE, bins_read(cells, output_size, map_size, end_cell=0)),
            (_exact_edges_message(cells, output_size), bins_read(cells, output_size, map_size, float32_edges=False))]


def _exact_edges_message(cells: Tensor, output_size: tuple[int, int]) -> str:
    """EXACT_EDGES with the first bin edge that float32 moves for these RoIs (cells: [K, 4] int64); '' if none."""
    heights, widths = (cells[:, 3] - cells[:, 1] + 1).tolist(), (cells[:, 2] - cells[:, 0] + 1).tolist()
    for length, pooled in [(h, output_size[0]) for h in heights] + [(w, output_size[1]) for w in widths]:
        length = max(length, 1)
        bin_size = torch.tensor(float(length)) / pooled  # float32, as the kernel
        for p in range(1, pooled + 1):
            product = float(p * bin_size)
            if math.floor(product) != p * length // pooled or math.ceil(product) != -(-p * length // pooled):
                return EXACT_EDGES.format(p=p, length=length, pooled=pooled, product=product,
                                          exact=p * length / pooled)
    return ""


def _cells_text(reads: Tensor, width: int) -> str:
    """'rows 1..2, column 0' for a bin's [H * W] bool cells (their bounding box), or 'no cell'."""
    where = reads.view(-1, width).nonzero()
    if len(where) == 0:
        return "no cell (an empty bin)"
    (top, left), (bottom, right) = where.amin(dim=0).tolist(), where.amax(dim=0).tolist()
    rows = f"row {top}" if top == bottom else f"rows {top}..{bottom}"
    columns = f"column {left}" if left == right else f"columns {left}..{right}"
    return f"{rows}, {columns}"


def _pool_cases(generator: torch.Generator) -> list[tuple[str, Tensor, Tensor, tuple[int, int], float]]:
    """Hand-made (name, features [C, H, W], boxes [K, 4] image px, (PH, PW), spatial_scale)."""
    def boxes(rows: list[list[float]]) -> Tensor:
        return torch.tensor(rows, dtype=torch.float32)
    below_zero = -1 - torch.rand(3, 6, 7, generator=generator)  # every value < 0: an empty bin's 0 stands out
    return [
        ("d2l's 4x4 map (§14.8), 2x2 bins at spatial_scale 0.1", torch.arange(16.0).view(1, 4, 4),
         boxes([[0, 0, 20, 20], [0, 10, 30, 30]]), (2, 2), 0.1),
        ("a zero-size RoI, one smaller than a bin, corners on halves", torch.randn(2, 5, 6, generator=generator),
         boxes([[40, 40, 40, 40], [20, 20, 27, 27], [8, 24, 40, 56]]), (3, 3), 1 / 16),
        ("RoIs across and beyond the map's edges (empty bins are 0)", below_zero,
         boxes([[64, 40, 160, 120], [200, 200, 260, 260], [-40, -40, 20, 20], [0, 72, 100, 150]]), (2, 3), 1 / 16),
        ("a 57-cell RoI in 7 bins, where float32 moves the last edge", torch.arange(64.0).expand(2, 2, 64).clone(),
         boxes([[2, 0, 58, 1]]), (1, 7), 1.0),
    ]


def _random_pool_cases(count: int, generator: torch.Generator) -> list[tuple[str, Tensor, Tensor, tuple[int, int],
                                                                             float]]:
    """Random maps and integer-px RoIs, some partly or wholly outside the map, as (name, features, boxes, ...)."""
    cases = []
    for channels, height, width, output_size, spatial_scale in [(3, 12, 17, (7, 7), 1 / 16), (4, 9, 9, (3, 5), 0.5),
                                                                (2, 20, 11, (2, 2), 0.25)]:
        features = torch.randn(channels, height, width, generator=generator)
        boxes = _random_boxes(count, -40, int(max(height, width) / spatial_scale) + 40, generator)
        cases.append((f"random {height}x{width} map, {output_size[0]}x{output_size[1]} bins at spatial_scale "
                      f"{spatial_scale:g}", features, boxes, output_size, spatial_scale))
    return cases


def _check_pool_case(fn: PoolFunction, name: str, features: Tensor, boxes: Tensor, output_size: tuple[int, int],
                     spatial_scale: float) -> None:
    """Values first for the form, then the cells each bin reads (a one-hot map), then the values themselves."""
    _, height, width = features.shape
    where = f"roi max pooling, {name}"
    expected = roi_pool(features[None], [boxes], output_size, spatial_scale)  # [K, C, PH, PW]
    got = _check_form(_call(fn, "my_roi_pool", features, boxes, output_size, spatial_scale), expected, where,
                      "[K, C, PH, PW]", " (the feature map's)")
    one_hot = torch.eye(height * width).view(height * width, height, width)  # channel y * W + x: cell (y, x)
    expected_reads = roi_pool(one_hot[None], [boxes], output_size, spatial_scale) > 0  # [K, H * W, PH, PW]
    got_reads = _check_form(_call(fn, "my_roi_pool", one_hot, boxes, output_size, spatial_scale),
                            expected_reads.float(), f"{where} (one-hot map)", "[K, H * W, PH, PW]", "") > 0
    if not torch.equal(got_reads, expected_reads):
        _raise_for_cells(where, got_reads, expected_reads, boxes, spatial_scale, output_size, (height, width))
    if not torch.equal(got, expected):
        k, c, ph, pw = (got != expected).nonzero()[0].tolist()
        cells = expected_reads[k, :, ph, pw]
        where = f"{where}: RoI {k} {_text(boxes[k].tolist())} image px, channel {c}, bin ({ph}, {pw})"
        if not cells.any():
            raise AssertionError(f"{where} reads no cell of the {height}x{width} map: an empty bin outputs 0 "
                                 f"(rule 4), yours gives {got[k, c, ph, pw].item():g}")
        raise AssertionError(f"{where} reads the right cells ({_cells_text(cells, width)}) but gives "
                             f"{got[k, c, ph, pw].item():g}, not their maximum {expected[k, c, ph, pw].item():g}")


def _raise_for_cells(where: str, got_reads: Tensor, expected_reads: Tensor, boxes: Tensor, spatial_scale: float,
                     output_size: tuple[int, int], map_size: tuple[int, int]) -> None:
    """AssertionError naming the first bin that reads other cells than roi_pool's, and the mistake if recognised.
    got_reads, expected_reads: [K, H * W, PH, PW] bool, as bins_read."""
    k, ph, pw = (got_reads != expected_reads).any(dim=1).nonzero()[0].tolist()
    width = map_size[1]
    mistake = next((message for message, reads in _pool_mistakes(boxes, spatial_scale, output_size, map_size)
                    if torch.equal(got_reads, reads) and not torch.equal(reads, expected_reads)), RULE_BINS)
    raise AssertionError(f"{where}: RoI {k} {_text(boxes[k].tolist())} image px -> cells "
                         f"{_text(expected_cells(boxes, spatial_scale)[k].tolist())} on the {map_size[0]}x{width} "
                         f"map: bin ({ph}, {pw}) should read {_cells_text(expected_reads[k, :, ph, pw], width)}, "
                         f"yours reads {_cells_text(got_reads[k, :, ph, pw], width)}: {mistake}")


def check_roi_max_pool(fn: PoolFunction, random_rois: int = 20, seed: int = 0) -> str:
    """Check a student's RoI max pooling of one image against frcnn_edu.ops.roi_pool (torchvision's rules).

    Args:
        fn: fn(features, boxes, output_size, spatial_scale) with features [C, H, W] float32 (feature cells), boxes
            [K, 4] float32 xyxy image px, output_size (PH, PW) and spatial_scale a float, returning [K, C, PH, PW]
            float32: per channel, the max over the cells of each bin; 0 for a bin wholly outside the map.
        random_rois: RoIs per random case (three cases: 7x7, 3x5 and 2x2 bins on maps of 12x17, 9x9, 20x11).
        seed: seeds the random maps and RoIs.

    Returns:
        A one-line summary of the cases that passed. Raises AssertionError naming the first RoI and bin that
        differ and the mistake they show; errors raised by fn go through unchanged.
    """
    generator = torch.Generator().manual_seed(seed)
    hand_made = _pool_cases(generator)
    for case in hand_made + _random_pool_cases(random_rois, generator):
        _check_pool_case(fn, *case)
    count = sum(len(boxes) for _, _, boxes, _, _ in hand_made)
    return (f"roi max pooling: {count} hand-made and {3 * random_rois} random RoIs agree with "
            f"frcnn_edu.ops.roi_pool (the values, and the cells each bin reads)")

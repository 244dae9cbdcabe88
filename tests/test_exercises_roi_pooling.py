"""frcnn_edu.exercises.roi_pooling: the RoI projection and RoI max pooling checks (notebook 03) pass the notebook's
solutions, name each mistake a student makes (the frame, the tie rule, rounding down, x and y swapped, the end cell
off by one, bin edges in exact arithmetic or floored, an empty bin that is not 0, a mean instead of a max, the
form), and let the exercise's NotImplementedError through."""
import math

import pytest
import torch

from frcnn_edu.exercises.roi_pooling import bins_read, check_roi_max_pool, check_roi_projection, expected_cells
from frcnn_edu.ops import roi_pool


def not_done(*args):
    raise NotImplementedError("your code here: replace this line")


# ---- RoI projection ---------------------------------------------------------------------------------------------

def round_half_away(scaled):
    """The notebook's solution's rounding: toward zero, then one step away from zero from a half on."""
    whole = torch.trunc(scaled)
    return torch.where((scaled - whole).abs() >= 0.5, whole + torch.sign(scaled), whole)


def projection(rounding=round_half_away, scale=lambda boxes, s: boxes * s, order=(0, 1, 2, 3),
               end=(0, 0, 0, 0)):
    """The notebook's solution, with each of its steps replaceable by a student's mistake."""
    def my_roi_projection(boxes, spatial_scale):
        cells = rounding(scale(boxes, spatial_scale)).long()  # [K, 4]
        return cells[:, list(order)] + torch.tensor(end)
    return my_roi_projection


def test_the_solution_passes_the_projection_check():
    summary = check_roi_projection(projection())
    assert summary.startswith("roi projection: 11 hand-made and 150 random boxes agree with frcnn_edu.ops.roi_pool")


@pytest.mark.parametrize("fn, message", [
    (projection(scale=lambda boxes, s: boxes), r"still in image px: multiply by spatial_scale \(0.0625"),
    (projection(scale=lambda boxes, s: boxes / s), "image px divided by spatial_scale"),
    (projection(rounding=torch.round), r"a tie broken the other way: torch.round .* 2.5 -> 2"),
    (projection(rounding=lambda v: torch.floor(v + 0.5)), "a negative half broken the wrong way"),
    (projection(rounding=torch.floor), "corners rounded down"),
    (projection(rounding=torch.trunc), "corners rounded down"),
    (projection(order=(1, 0, 3, 2)), "x and y swapped"),
    (projection(end=(0, 0, 1, 1)), "the end cell off by one: .* do not add 1"),
    (projection(end=(0, 0, -1, -1)), "the end cell off by one: .* do not subtract 1"),
    (projection(rounding=lambda v: torch.full_like(v, 7)), r"rule: corner \* spatial_scale, rounded to the nearest"),
])
def test_each_projection_mistake_is_named(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_roi_projection(fn)


def test_a_projection_message_names_the_box_and_both_answers():
    with pytest.raises(AssertionError) as error:
        check_roi_projection(projection(rounding=torch.round))
    assert str(error.value).startswith(
        "roi projection, corners on exact halves (x / 16 = 0.5, 1.5, 2.5, 3.5): box 0 (8, 24, 40, 56) image px at "
        "spatial_scale 0.0625 (times spatial_scale: (0.5, 1.5, 2.5, 3.5)) should give cells (1, 2, 3, 4), yours "
        "gives (0, 2, 2, 4): a tie broken the other way")


@pytest.mark.parametrize("fn, message", [
    (lambda boxes, s: projection()(boxes, s).tolist(), "expected a torch.Tensor, got list"),
    (lambda boxes, s: projection()(boxes, s).T, r"wrong shape: expected \[K, 4\] = \(1, 4\), got \(4, 1\)"),
    (lambda boxes, s: projection()(boxes, s)[:, :2], r"wrong shape: expected \[K, 4\] = \(1, 4\), got \(1, 2\)"),
    (lambda boxes, s: round_half_away(boxes * s), r"wrong dtype: expected torch.int64 \(whole cells: .long\(\) "
                                                  r"after rounding\), got torch.float32"),
    (lambda boxes, s: projection()(boxes.mul_(s), 1.0), "my_roi_projection changed its argument 1 in place"),
])
def test_the_projection_form_is_checked(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_roi_projection(fn)


def test_expected_cells_are_the_cells_roi_pool_reads():
    """A map whose value is the cell's x (or -x, y, -y), pooled into one bin: its max is the RoI's last (or first)
    cell, so roi_pool itself says which cells it reads; they are expected_cells' (boxes inside the map)."""
    height, width = 64, 64
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coordinates = torch.stack([-xs, -ys, xs, ys]).float()[None]  # [1, 4, H, W]: maxima are -x1, -y1, x2, y2
    generator = torch.Generator().manual_seed(1)
    for spatial_scale in (1 / 16, 1 / 32, 0.5, 0.1):
        start = torch.randint(0, int(30 / spatial_scale), (200, 2), generator=generator)
        size = torch.randint(0, int(30 / spatial_scale), (200, 2), generator=generator)
        boxes = torch.cat([start, start + size], dim=1).float()  # [200, 4] integer px, corners on halves too
        read = roi_pool(coordinates, [boxes], 1, spatial_scale)[:, :, 0, 0] * torch.tensor([-1, -1, 1, 1])
        assert torch.equal(read.long(), expected_cells(boxes, spatial_scale)), spatial_scale


def test_an_unfinished_projection_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="your code here"):
        check_roi_projection(not_done)


# ---- RoI max pooling --------------------------------------------------------------------------------------------

def float32_edges(length, pooled, dtype):
    """The notebook's solution's bin edges: [(lo, hi)] cells from the RoI's first, bin size in the map's dtype."""
    bin_size = torch.tensor(length, dtype=dtype) / pooled
    return [(int(torch.floor(p * bin_size)), int(torch.ceil((p + 1) * bin_size))) for p in range(pooled)]


def exact_edges(length, pooled, dtype):
    return [(math.floor(p * length / pooled), math.ceil((p + 1) * length / pooled)) for p in range(pooled)]


def floored_edges(length, pooled, dtype):
    return [(math.floor(p * length / pooled), math.floor((p + 1) * length / pooled)) for p in range(pooled)]


def pooling(cells=projection(), end_cell=1, edges=float32_edges, empty=0.0, reduce=lambda v: v.amax(dim=(1, 2)),
            swap_xy=False):
    """The notebook's solution, with each of its steps replaceable by a student's mistake."""
    def my_roi_pool(features, boxes, output_size, spatial_scale):
        channels, height, width = features.shape
        pooled_h, pooled_w = output_size
        out = features.new_full((len(boxes), channels, pooled_h, pooled_w), empty)
        for k, (x1, y1, x2, y2) in enumerate(cells(boxes, spatial_scale).tolist()):
            if swap_xy:
                x1, y1, x2, y2 = y1, x1, y2, x2
            rows = edges(max(y2 - y1 + end_cell, 1), pooled_h, features.dtype)
            columns = edges(max(x2 - x1 + end_cell, 1), pooled_w, features.dtype)
            for ph, (top, bottom) in enumerate(rows):
                h0, h1 = min(max(top + y1, 0), height), min(max(bottom + y1, 0), height)
                for pw, (left, right) in enumerate(columns):
                    w0, w1 = min(max(left + x1, 0), width), min(max(right + x1, 0), width)
                    if h1 > h0 and w1 > w0:
                        out[k, :, ph, pw] = reduce(features[:, h0:h1, w0:w1])
        return out
    return my_roi_pool


def test_the_solution_passes_the_pooling_check():
    summary = check_roi_max_pool(pooling())
    assert summary == ("roi max pooling: 10 hand-made and 60 random RoIs agree with frcnn_edu.ops.roi_pool "
                       "(the values, and the cells each bin reads)")


@pytest.mark.parametrize("fn, message", [
    (pooling(cells=projection(scale=lambda boxes, s: boxes)), r"still in image px: multiply by spatial_scale \(0.1"),
    (pooling(swap_xy=True), "x and y swapped"),
    (pooling(cells=projection(rounding=torch.round)), "a tie broken the other way"),
    (pooling(cells=projection(rounding=lambda v: torch.floor(v + 0.5))), "a negative half broken the wrong way"),
    (pooling(cells=projection(rounding=torch.floor)), "corners rounded down"),
    (pooling(end_cell=0), r"the end cell off by one: the RoI covers cells x1..x2 with x2 included"),
    (pooling(edges=exact_edges), r"bin edges in exact arithmetic: .* where 7 \* \(57 / 7\) = 57.0000038\d*, not 57"),
    (pooling(edges=floored_edges), r"rule: bin p spans \[floor\(p \* bin\), ceil\(\(p \+ 1\) \* bin\)\)"),
    (pooling(empty=-math.inf), r"reads no cell of the 6x7 map: an empty bin outputs 0 \(rule 4\), yours gives -inf"),
    (pooling(reduce=lambda v: v.mean(dim=(1, 2))), r"reads the right cells \(rows 0..1, columns 0..1\) but gives "
                                                   r"2.5, not their maximum 5"),
])
def test_each_pooling_mistake_is_named(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_roi_max_pool(fn)


def test_a_pooling_message_names_the_roi_the_bin_and_the_cells():
    with pytest.raises(AssertionError) as error:
        check_roi_max_pool(pooling(end_cell=0))
    assert str(error.value).startswith(
        "roi max pooling, d2l's 4x4 map (§14.8), 2x2 bins at spatial_scale 0.1: RoI 0 (0, 0, 20, 20) image px -> "
        "cells (0, 0, 2, 2) on the 4x4 map: bin (0, 0) should read rows 0..1, columns 0..1, yours reads row 0, "
        "column 0: the end cell off by one")


@pytest.mark.parametrize("fn, message", [
    (lambda *args: pooling()(*args).permute(0, 2, 3, 1),
     r"wrong shape: expected \[K, C, PH, PW\] = \(2, 1, 2, 2\), got \(2, 2, 2, 1\)"),
    (lambda *args: pooling()(*args)[0], r"wrong shape: expected \[K, C, PH, PW\] = \(2, 1, 2, 2\), got \(1, 2, 2\)"),
    (lambda *args: pooling()(*args).double(), r"wrong dtype: expected torch.float32 \(the feature map's\), "
                                              r"got torch.float64"),
    (lambda *args: pooling()(*args).numpy(), "expected a torch.Tensor, got ndarray"),
    (lambda features, *args: pooling()(features.clamp_(min=0), *args), "my_roi_pool changed its argument 1 in place"),
])
def test_the_pooling_form_is_checked(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_roi_max_pool(fn)


def test_bins_read_is_what_roi_pool_reads():
    """The model the mistakes are computed with reproduces the package on its own rules (one-hot maps)."""
    generator = torch.Generator().manual_seed(2)
    for height, width, output_size in [(12, 17, (7, 7)), (9, 9, (3, 5)), (64, 70, (7, 7))]:
        start = torch.randint(-5, max(height, width) + 5, (30, 2), generator=generator)
        boxes = torch.cat([start, start + torch.randint(0, 60, (30, 2), generator=generator)], dim=1).float()
        one_hot = torch.eye(height * width).view(1, height * width, height, width)
        expected = roi_pool(one_hot, [boxes], output_size, 1.0) > 0
        assert torch.equal(bins_read(expected_cells(boxes, 1.0), output_size, (height, width)), expected)


def test_an_unfinished_pooling_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="your code here"):
        check_roi_max_pool(not_done)

"""RoI max pooling (Fast R-CNN §2.1) with the semantics of torchvision.ops.roi_pool, in plain tensor operations.

Fast R-CNN projects each RoI from image pixels onto the conv feature map (multiply by spatial_scale, 1/16 for
VGG-16's conv5_3), cuts it into an output_size grid of bins, and max-pools each bin, so RoIs of any size become
a fixed [C, 7, 7] input for the FC layers. Notebook: 03_fast_rcnn_roi_pooling.

torchvision's quirks, reproduced exactly (its CPU kernel is roi_pool_kernel.cpp):
- the scaled RoI corners are rounded to whole cells, halves away from zero (C's round, not torch.round);
- the end cell counts inclusively: roi_width = max(x2 - x1 + 1, 1) cells, so a zero-size RoI is one cell;
- bin ph spans rows [floor(ph * h / PH), ceil((ph + 1) * h / PH)) of the RoI, shifted and clipped to the map;
- an empty bin (wholly outside the map) outputs 0 and passes no gradient;
- the gradient of a bin goes to its argmax, the first maximum in row-major order.

How the argmax of every bin is found in about 140 operations, whatever the number of RoIs:
1. Rank the cells of each channel plane: a stable sort, largest first. Rank 0 is the plane's maximum, and equal
   values keep row-major order, so the smallest rank in a bin is exactly torchvision's argmax (ties included).
   Ranks are small integers (int16 while the batch has under 32768 cells a channel), so the table is cheap.
   (A NaN sorts first, so a bin holding one returns it; torchvision's kernel skips NaN.)
2. A 2-D sparse table of minimum ranks: level (i, j) holds, at each cell, the minimum over the 2^i x 2^j block
   starting there. Level (0, j) comes from (0, j - 1) by one elementwise minimum with itself shifted 2^(j-1)
   cells right; then every level (i, j), all j at once, from (i - 1, j) shifted 2^(i-1) rows down: about
   log2(H) + log2(W) operations. Only blocks that fit inside the map are ever looked up (below); the rest of
   each level is never read, so its contents do not matter.
3. A bin of h x w cells is covered exactly by the four (overlapping) blocks of 2^floor(log2 h) x
   2^floor(log2 w) cells at its corners, all inside the map. One index_select reads those four ranks for every
   bin, channel and RoI; their minimum is the bin's rank. An empty bin reads a rank one past the last.
4. The output is the sorted values read at those ranks, with a zero appended for the empty bins' rank.
   Autograd's backward is an add into the sorted order, then the sort's own backward puts each cell's
   gradient back in place: the argmax receives it, repeated cells accumulate, as torchvision's gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_roi_tensor, check_feature_map, pair


def round_half_away_from_zero(x: Tensor) -> Tensor:
    """C's round(): 2.5 -> 3, -2.5 -> -3 (torch.round rounds halves to even). Exact: the fraction x - trunc(x)
    and its double are exact, and trunc(2 * fraction) is -1, 0 or 1: the step away from zero, if any."""
    whole = torch.trunc(x)
    return whole + torch.trunc((x - whole) * 2)


def _levels(size: int) -> int:
    return size.bit_length()  # levels 0 .. floor(log2(size)): blocks of 1, 2, 4, ... <= size


def _rank_table(order: Tensor, shape: torch.Size) -> Tensor:
    """Sparse table of minimum ranks over every power-of-two block of the map (module docstring, steps 1-2).

    Args:
        order: [N, C, H * W] int64, order[n, c, r] = row-major position of the r-th largest cell of plane (n, c).
        shape: the input's [N, C, H, W].

    Returns:
        [LW * LH * N * H * W + 1, C] int16 (int32 above 32767 cells in all images); row
        ((j * LH + i) * N + n) * H * W + y * W + x holds the smallest rank in input[n, :, y:y+2^i, x:x+2^j]
        for blocks inside the map (other rows: unspecified). LH = floor(log2 H) + 1, LW likewise. Ranks count
        across images, n * H * W + r, so that one gather serves every image; the last row, for empty bins,
        holds N * H * W, one past the largest rank: the zero that _roi_pool appends to the sorted values.
    """
    num, channels, height, width = shape
    levels_h, levels_w, cells = _levels(height), _levels(width), num * height * width
    rank_dtype = torch.int16 if cells < 1 << 15 else torch.int32  # int16 halves the table: most of the time
    flat = torch.empty(levels_w * levels_h * cells + 1, channels, device=order.device, dtype=rank_dtype)
    flat[-1].fill_(cells)
    # Level (0, 0): the rank of each cell, channels last (a lookup reads one row of C ranks).
    ranks = torch.arange(cells, device=order.device, dtype=rank_dtype).view(num, 1, height * width)
    level0 = flat[:cells].view(num, height * width, channels).transpose(1, 2)  # [N, C, H * W] view
    level0.scatter_(2, order, ranks.expand_as(order))  # the cell at order[n, c, r] has rank n * H * W + r
    # Widths: level (0, j) from (0, j - 1). Rows run on across cells, images and levels (one flat axis), so
    # the shifted block of a cell near the right edge is some other cell: only blocks inside the map are read.
    for j in range(1, levels_w):
        shift, src, dst = 1 << (j - 1), (j - 1) * levels_h * cells, j * levels_h * cells
        count = cells - shift
        torch.minimum(flat.narrow(0, src, count), flat.narrow(0, src + shift, count),
                      out=flat.narrow(0, dst, count))
    # Heights: level (i, j) from (i - 1, j), for every width level j at once (the leading axis of this view).
    by_width = flat[:-1].view(levels_w, levels_h * cells, channels)
    for i in range(1, levels_h):
        shift, src = (1 << (i - 1)) * width, (i - 1) * cells
        count = cells - shift
        torch.minimum(by_width.narrow(1, src, count), by_width.narrow(1, src + shift, count),
                      out=by_width.narrow(1, src + cells, count))
    return flat


def _axis_blocks(start: Tensor, length: Tensor, pooled: int, size: int, level_stride: int,
                 cell_stride: int) -> tuple[Tensor, Tensor]:
    """The bins along one axis (torchvision's rules) and the two power-of-two blocks that cover each.

    Bin p spans cells [lo, hi) = [floor(p * b), ceil((p + 1) * b)) + start, clipped to [0, size], with
    b = length / pooled. Its blocks have 2^level cells, level = floor(log2(hi - lo)), and start at lo and at
    hi - 2^level: both inside the map, overlapping unless the bin's length is a power of two.

    Args:
        start: [K, 1] first cell of each RoI (rounded), float. length: [K, 1] its cell count (>= 1), float.
        pooled: bins along the axis. size: cells along the axis.
        level_stride, cell_stride: table rows from one level to the next, and from one cell to the next.

    Returns:
        offsets: [2, K, pooled] int64, level * level_stride + first cell * cell_stride for the two blocks.
        empty: [K, pooled] bool, the bins with no cell on the map (their offsets are meaningless).
    """
    index = torch.arange(pooled + 1, device=start.device, dtype=start.dtype)  # [P + 1]
    edges = index * (length / pooled)  # [K, P + 1], from the RoI's first cell: p * b, as torchvision
    lo = (edges[:, :-1].floor() + start).clamp(0, size)  # [K, P]
    hi = (edges[:, 1:].ceil() + start).clamp(0, size)
    level = torch.frexp((hi - lo).clamp(min=1)).exponent - 1  # length = m * 2^e with m in [0.5, 1): exact
    first = torch.stack([lo, hi - (1 << level)]).long()  # [2, K, P]
    return level * level_stride + first * cell_stride, hi == lo


def _corner_rows(rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int, shape: torch.Size) -> Tensor:
    """Rows of _rank_table's table holding the four blocks that cover each bin (torchvision's bin rules).

    Args:
        rois: [K, 5] (batch index, x1, y1, x2, y2), image px. shape: the input's [N, C, H, W].

    Returns:
        [4, K * PH * PW] int64 table rows, bin (k, ph, pw) at k * PH * PW + ph * PW + pw; all four are the
        table's last row (the rank of a zero) for an empty bin.
    """
    num_rois = rois.shape[0]
    num, _, height, width = shape
    cells = num * height * width
    corners = round_half_away_from_zero(rois[:, 1:] * spatial_scale)  # [K, 4] whole feature cells
    length = (corners[:, 2:] - corners[:, :2] + 1).clamp(min=1)  # [K, 2]: end cell inclusive, at least one
    # row = ((level_w * LH + level_h) * N + n) * H * W + y * W + x: a term per axis, plus the image's
    x, empty_x = _axis_blocks(corners[:, 0:1], length[:, 0:1], pooled_w, width, _levels(height) * cells, 1)
    y, empty_y = _axis_blocks(corners[:, 1:2], length[:, 1:2], pooled_h, height, cells, width)  # [2, K, PH]
    y = y + rois[:, :1].long() * (height * width)  # image n's rows start at n * H * W
    rows = y.view(2, 1, num_rois, pooled_h, 1) + x.view(1, 2, num_rois, 1, pooled_w)  # [2, 2, K, PH, PW]
    empty = empty_y.view(num_rois, pooled_h, 1) | empty_x.view(num_rois, 1, pooled_w)  # [K, PH, PW]
    return rows.masked_fill_(empty, _levels(width) * _levels(height) * cells).view(4, -1)


def _roi_pool(input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float) -> Tensor:
    """roi_pool on checked arguments: rois [K, 5], same dtype and device as input [N, C, H, W]."""
    num, channels, height, width = input.shape
    num_rois, cells = rois.shape[0], num * height * width
    if cells == 0:  # no cells (so every bin is empty) or no images (so no RoIs): no table
        return input.new_zeros(num_rois, channels, pooled_h, pooled_w)
    values, order = input.flatten(2).sort(dim=2, descending=True, stable=True)  # [N, C, H * W], ties row-major
    table = _rank_table(order, input.shape)
    rows = _corner_rows(rois.detach(), spatial_scale, pooled_h, pooled_w, input.shape)  # [4, K * PH * PW]
    rank = table.index_select(0, rows.view(-1)).view(4, -1, channels).amin(dim=0)  # [K * PH * PW, C]
    # [C, N * H * W + 1]: row c holds channel c's cells, largest first, image after image, then a zero
    by_rank = torch.cat([values.transpose(0, 1).reshape(channels, cells), values.new_zeros(channels, 1)], dim=1)
    # Each output's position in by_rank, flat: c * (N * H * W + 1) + rank, laid out as the output [K, C, PH * PW],
    # so one RoI and channel's lookups stay in one row. int32 where it fits: on a CPU an index_select of a flat
    # tensor with int32 positions is about twice as fast as a gather with int64 ones.
    index_dtype = torch.int32 if by_rank.numel() < 1 << 31 else torch.int64
    starts = torch.arange(0, by_rank.numel(), cells + 1, device=input.device, dtype=index_dtype)  # [C]
    flat = torch.empty(num_rois, channels, pooled_h * pooled_w, device=input.device, dtype=index_dtype)
    flat.copy_(rank.view(num_rois, pooled_h * pooled_w, channels).transpose(1, 2)).add_(starts.view(1, channels, 1))
    output = by_rank.view(-1).index_select(0, flat.view(-1))  # backward: an add to each argmax, as torchvision's
    return output.view(num_rois, channels, pooled_h, pooled_w)


def roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoI max pooling (Fast R-CNN §2.1), as torchvision.ops.roi_pool: same signature, values and gradients.

    Args:
        input: [N, C, H, W] float, the feature map (feature cells).
        boxes: the RoIs in image px, xyxy: Tensor[K, 5] whose column 0 is the image index in the batch, or a
            list of N Tensor[L, 4], one per image. Same dtype and device as input.
        output_size: (PH, PW) bins, or one int for both; 7 in Fast R-CNN for VGG-16.
        spatial_scale: image px -> feature cells. E.g. VGG-16's conv5_3 has stride 16, so 1/16: a 224 px
            image gives a 14-cell map and the RoI (32, 32, 95, 95) covers cells 2..6 (rounded, end inclusive).

    Returns:
        [K, C, PH, PW], the max of each bin (0 for a bin wholly outside the map). Differentiable in input;
        like torchvision, not in boxes.
    """
    input = check_feature_map(input)
    rois = as_roi_tensor(boxes, input)
    pooled_h, pooled_w = pair(output_size)
    return _roi_pool(input, rois, pooled_h, pooled_w, float(spatial_scale))


class RoIPool(nn.Module):
    """Module form of roi_pool, as torchvision.ops.RoIPool(output_size, spatial_scale)."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float):
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"

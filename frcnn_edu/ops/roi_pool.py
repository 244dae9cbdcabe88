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

How the max over every bin is found without a loop over RoIs: a 2-D sparse table. Level (i, j) holds, at each
cell, the max (and its position) over the 2^i x 2^j block starting there. Any rectangle of h x w cells is
covered exactly by four such blocks of size 2^floor(log2 h) x 2^floor(log2 w), at its four corners, so each
bin needs four lookups whatever its size. The argmax is torchvision's, the first maximum in row-major order:
the table is built by doubling blocks along a row, then stacking them downwards, so the second block of a
merge always lies after the first and wins only with a strictly larger value; the four overlapping corner
blocks of a bin are compared by position.
The lookups are made a few RoIs at a time, so their [4, k, PH, PW, C] temporaries stay in the CPU's cache.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_roi_tensor, check_feature_map, pair

_CHUNK_ELEMENTS = 1 << 20  # RoIs looked up per step: [4, k, PH, PW, C] stays about 4 MB (float32), cache-sized


def round_half_away_from_zero(x: Tensor) -> Tensor:
    """C's round(): 2.5 -> 3, -2.5 -> -3 (torch.round rounds halves to even). Exact: x - trunc(x) is exact."""
    whole = torch.trunc(x)
    return whole + torch.sign(x) * ((x - whole).abs() >= 0.5)


def _levels(size: int) -> int:
    return size.bit_length()  # levels 0 .. floor(log2(size)): blocks of 1, 2, 4, ... <= size


def _double(prev_v: Tensor, prev_p: Tensor | None, out_v: Tensor, out_p: Tensor | None, dim: int, step: int):
    """One doubling step along dim: a block of 2 * step cells is the block of step cells at the same start
    merged with the one `step` cells further on, which lies after it, so it wins only with a larger value.
    Where that second block would start past the map's edge, the first block alone is the answer.

    Args:
        prev_v, prev_p: [N, H, W, C] block maxima of `step` cells along dim, and their positions (or None).
        out_v, out_p: [N, H, W, C] written in place with the maxima of 2 * step cells.
    """
    inside = prev_v.shape[dim] - step  # cells whose second block starts on the map
    first_v, second_v = prev_v.narrow(dim, 0, inside), prev_v.narrow(dim, step, inside)
    torch.maximum(first_v, second_v, out=out_v.narrow(dim, 0, inside))
    out_v.narrow(dim, inside, step).copy_(prev_v.narrow(dim, inside, step))
    if prev_p is not None:
        second_wins = second_v > first_v  # strict: on a tie the earlier position stays, as torchvision's argmax
        first_p, second_p = prev_p.narrow(dim, 0, inside), prev_p.narrow(dim, step, inside)
        # first + wins * (second - first): the same choice as torch.where, but 2-3x faster on CPU here
        torch.add(first_p, (second_p - first_p) * second_wins, out=out_p.narrow(dim, 0, inside))
        out_p.narrow(dim, inside, step).copy_(prev_p.narrow(dim, inside, step))


def _sparse_table(input: Tensor, with_positions: bool) -> tuple[Tensor, Tensor | None]:
    """Block maxima of the feature map for every power-of-two block size, plus one zero row for empty bins.

    Args:
        input: [N, C, H, W] float, feature cells.
        with_positions: also return where each maximum is (needed only for the gradient).

    Returns:
        values: [LW * LH * N * H * W + 1, C]; row ((j * LH + i) * N + n) * H * W + y * W + x holds the max of
            input[n, :, y:y+2^i, x:x+2^j] (clipped at the map's edge); LH = floor(log2 H) + 1, LW likewise.
            The last row is 0: an empty bin looks it up, so it needs no masking afterwards.
        positions: same shape, int32, the row-major position y * W + x of that max (first one on ties), or None.
            The last row is H * W, one past the plane: the gradient of an empty bin goes to that dummy cell.
    """
    num, channels, height, width = input.shape
    levels_h, levels_w = _levels(height), _levels(width)
    values = input.new_empty(levels_w * levels_h * num * height * width + 1, channels)
    table_v = values[:-1].view(levels_w, levels_h, num, height, width, channels)  # channels last: a lookup is a row
    table_v[0, 0] = input.permute(0, 2, 3, 1)  # [N, C, H, W] -> [N, H, W, C]
    positions, table_p = None, [[None] * levels_h for _ in range(levels_w)]
    if with_positions:
        positions = torch.empty(values.shape, dtype=torch.int32, device=input.device)
        table_p = positions[:-1].view(table_v.shape)
        table_p[0, 0] = torch.arange(height * width, device=input.device, dtype=torch.int32).view(height, width, 1)
    # Each level is written in place into the table (no stacking copy). First 1-row blocks along the row
    # (dim 2 of [N, H, W, C]), then each of those doubled downwards (dim 1): the second block of every merge
    # lies after the first in row-major order, which makes the tie rule a strict comparison.
    for j in range(levels_w):
        if j > 0:
            _double(table_v[j - 1, 0], table_p[j - 1][0], table_v[j, 0], table_p[j][0], 2, 1 << (j - 1))
        for i in range(1, levels_h):
            _double(table_v[j, i - 1], table_p[j][i - 1], table_v[j, i], table_p[j][i], 1, 1 << (i - 1))
    values[-1] = 0
    if positions is not None:
        positions[-1] = height * width
    return values, positions


def _bin_edges(start: Tensor, length: Tensor, pooled: int, size: int) -> tuple[Tensor, Tensor]:
    """Cell ranges [lo, hi) of the bins along one axis, clipped to [0, size].

    Args:
        start: [K] first cell of each RoI (rounded), float. length: [K] its cell count (>= 1), float.

    Returns:
        lo, hi: [K, pooled] int64.
    """
    bin_size = length[:, None] / pooled  # [K, 1]
    index = torch.arange(pooled, device=start.device, dtype=start.dtype)  # [pooled]
    lo = torch.floor(index * bin_size) + start[:, None]  # [K, pooled]
    hi = torch.ceil((index + 1) * bin_size) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def _floor_log2(length: Tensor, levels: int) -> Tensor:
    """floor(log2(length)) for integer lengths >= 1, by counting powers of two (exact, unlike float log2)."""
    return sum((length >= (1 << i)).long() for i in range(1, levels))


def _corner_rows(rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int, shape: torch.Size) -> Tensor:
    """Rows of the sparse table holding the four blocks that cover each bin (torchvision's bin rules).

    Args:
        rois: [K, 5] (batch index, x1, y1, x2, y2), image px. shape: the input's [N, C, H, W].

    Returns:
        [4, K, PH, PW] int64 rows into _sparse_table's output; all four are its zero row for an empty bin.
    """
    num, _, height, width = shape
    cells = round_half_away_from_zero(rois[:, 1:] * spatial_scale)  # [K, 4] whole feature cells
    x1, y1, x2, y2 = cells.unbind(1)
    row_lo, row_hi = _bin_edges(y1, (y2 - y1 + 1).clamp(min=1), pooled_h, height)  # [K, PH]
    col_lo, col_hi = _bin_edges(x1, (x2 - x1 + 1).clamp(min=1), pooled_w, width)  # [K, PW]
    row_lo, row_hi = row_lo[:, :, None], row_hi[:, :, None]  # [K, PH, 1]
    col_lo, col_hi = col_lo[:, None, :], col_hi[:, None, :]  # [K, 1, PW]
    empty = (row_hi <= row_lo) | (col_hi <= col_lo)  # [K, PH, PW]
    level_h = _floor_log2((row_hi - row_lo).clamp(min=1), _levels(height))
    level_w = _floor_log2((col_hi - col_lo).clamp(min=1), _levels(width))
    image = rois[:, 0].long()[:, None, None]  # [K, 1, 1]
    level_start = ((level_w * _levels(height) + level_h) * num + image) * height  # [K, PH, PW]
    corners = []
    for y in (row_lo, row_hi - (1 << level_h)):  # top and bottom blocks, overlapping when h is not 2^i
        for x in (col_lo, col_hi - (1 << level_w)):
            y, x = y.clamp(0, height - 1), x.clamp(0, width - 1)  # moves only empty bins, redirected below
            corners.append((level_start + y) * width + x)
    zero_row = _levels(height) * _levels(width) * num * height * width
    return torch.stack(corners).masked_fill_(empty, zero_row)  # [4, K, PH, PW]


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float) -> Tensor:
        num, channels, height, width = input.shape
        corners = _corner_rows(rois.detach(), spatial_scale, pooled_h, pooled_w, input.shape)  # [4, K, PH, PW]
        num_rois = corners.shape[1]
        values, positions = _sparse_table(input, with_positions=ctx.needs_input_grad[0])
        output = input.new_empty(num_rois, channels, pooled_h, pooled_w)
        if positions is not None:
            # argmax indexes the gradient as [N * C, H * W + 1]: each plane has a dummy last cell for empty bins
            plane_size = height * width + 1
            index_dtype = torch.int32 if num * channels * plane_size < 2**31 else torch.int64  # half the memory
            argmax = torch.empty(num_rois, channels, pooled_h, pooled_w, dtype=index_dtype, device=input.device)
            planes = rois[:, 0].detach().to(index_dtype)[:, None] * channels + torch.arange(
                channels, device=input.device, dtype=index_dtype)  # [K, C] plane of each RoI and channel
            planes = (planes * plane_size)[:, None, None, :]  # [K, 1, 1, C]
        chunk = max(1, _CHUNK_ELEMENTS // (4 * pooled_h * pooled_w * channels))
        for begin in range(0, num_rois, chunk):
            end = min(begin + chunk, num_rois)
            rows = corners[:, begin:end]  # [4, k, PH, PW]
            candidates = values[rows]  # [4, k, PH, PW, C]
            best = candidates.amax(dim=0)  # [k, PH, PW, C]
            output[begin:end] = best.permute(0, 3, 1, 2)  # [k, PH, PW, C] -> [k, C, PH, PW]
            if positions is not None:  # the earliest position among the corner blocks that hold the max
                not_max = candidates != best  # [4, k, PH, PW, C]
                # positions + plane_size where not a max (arithmetic: faster than masked_fill_ here)
                first = torch.add(positions[rows], not_max, alpha=plane_size).amin(dim=0)  # [k, PH, PW, C]
                argmax[begin:end] = (planes[begin:end] + first).permute(0, 3, 1, 2)
        if positions is not None:
            ctx.save_for_backward(argmax)
        ctx.input_shape = input.shape
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (argmax,) = ctx.saved_tensors
        num, channels, height, width = ctx.input_shape
        grad = grad_output.new_zeros(num * channels * (height * width + 1))  # [N * C * (H * W + 1)]
        grad.index_add_(0, argmax.flatten(), grad_output.flatten())
        grad = grad.view(num, channels, height * width + 1)[..., :-1]  # drop each plane's dummy cell
        return grad.reshape(ctx.input_shape), None, None, None, None


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
    return _RoIPoolFunction.apply(input, rois, pooled_h, pooled_w, float(spatial_scale))


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

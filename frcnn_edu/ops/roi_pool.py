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
bin needs four lookups whatever its size. Merging (value, position) pairs keeps the larger value and, on
ties, the smaller row-major position: torchvision's argmax, since overlapping blocks do not change a max.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_roi_tensor, check_feature_map, pair


def round_half_away_from_zero(x: Tensor) -> Tensor:
    """C's round(): 2.5 -> 3, -2.5 -> -3 (torch.round rounds halves to even). Exact: x - trunc(x) is exact."""
    whole = torch.trunc(x)
    return whole + torch.sign(x) * ((x - whole).abs() >= 0.5)


def _merge(value_a: Tensor, pos_a: Tensor, value_b: Tensor, pos_b: Tensor) -> tuple[Tensor, Tensor]:
    """Max of two (value, position) candidates; on equal values the smaller position (earlier in the scan)."""
    take_b = (value_b > value_a) | ((value_b == value_a) & (pos_b < pos_a))
    return torch.where(take_b, value_b, value_a), torch.where(take_b, pos_b, pos_a)


def _shifted(t: Tensor, step: int, dim: int, fill: float | int) -> Tensor:
    """t moved by `step` towards index 0 along dim, padded with `fill`: out[..., i, ...] = t[..., i + step, ...]."""
    size = t.shape[dim]
    step = min(step, size)
    pad_shape = list(t.shape)
    pad_shape[dim] = step
    return torch.cat([t.narrow(dim, step, size - step), t.new_full(pad_shape, fill)], dim=dim)


def _levels(size: int) -> int:
    return size.bit_length()  # levels 0 .. floor(log2(size)): blocks of 1, 2, 4, ... <= size


def _doubling(value: Tensor, pos: Tensor | None, dim: int, levels: int) -> tuple[list[Tensor], list[Tensor | None]]:
    """Block maxima of sizes 1, 2, 4, ... along one dim: level l is level l-1 merged with itself shifted 2^(l-1)."""
    lowest = torch.finfo(value.dtype).min
    values, positions = [value], [pos]
    for level in range(1, levels):
        step = 1 << (level - 1)
        shifted = _shifted(values[-1], step, dim, lowest)
        if pos is None:
            values.append(torch.maximum(values[-1], shifted))
            positions.append(None)
        else:
            v, p = _merge(values[-1], positions[-1], shifted, _shifted(positions[-1], step, dim, 0))
            values.append(v)
            positions.append(p)
    return values, positions


def _sparse_table(input: Tensor, with_positions: bool) -> tuple[Tensor, Tensor | None]:
    """Block maxima of the feature map for every power-of-two block size.

    Args:
        input: [N, C, H, W] float, feature cells.
        with_positions: also return where each maximum is (needed only for the gradient).

    Returns:
        values: [LH * LW * N * H * W, C]; row ((i * LW + j) * N + n) * H * W + y * W + x holds the max of
            input[n, :, y:y+2^i, x:x+2^j] (clipped at the map's edge); LH = floor(log2 H) + 1, LW likewise.
        positions: same shape, int32, the row-major position y * W + x of that max (first one on ties), or None.
    """
    num, channels, height, width = input.shape
    value = input.permute(0, 2, 3, 1)  # [N, C, H, W] -> [N, H, W, C]: channels last, so a lookup is one row
    pos = None
    if with_positions:
        pos = torch.arange(height * width, device=input.device, dtype=torch.int32).view(1, height, width, 1)
        pos = pos.expand_as(value).contiguous()
    table_v, table_p = [], []
    for v, p in zip(*_doubling(value, pos, 1, _levels(height))):  # rows first, then columns of each
        cols_v, cols_p = _doubling(v, p, 2, _levels(width))
        table_v += cols_v
        table_p += cols_p
    values = torch.stack(table_v).reshape(-1, channels)  # [LH*LW*N*H*W, C]
    return values, (torch.stack(table_p).reshape(-1, channels) if with_positions else None)


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


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float) -> Tensor:
        num, channels, height, width = input.shape
        rois = rois.detach()
        cells = round_half_away_from_zero(rois[:, 1:] * spatial_scale)  # [K, 4] whole feature cells
        x1, y1, x2, y2 = cells.unbind(1)
        row_lo, row_hi = _bin_edges(y1, (y2 - y1 + 1).clamp(min=1), pooled_h, height)  # [K, PH]
        col_lo, col_hi = _bin_edges(x1, (x2 - x1 + 1).clamp(min=1), pooled_w, width)  # [K, PW]
        row_lo, row_hi = row_lo[:, :, None], row_hi[:, :, None]  # [K, PH, 1]
        col_lo, col_hi = col_lo[:, None, :], col_hi[:, None, :]  # [K, 1, PW]
        empty = (row_hi <= row_lo) | (col_hi <= col_lo)  # [K, PH, PW]
        rows = (row_hi - row_lo).clamp(min=1)
        cols = (col_hi - col_lo).clamp(min=1)
        level_h, level_w = _floor_log2(rows, _levels(height)), _floor_log2(cols, _levels(width))
        image = rois[:, 0].long()[:, None, None]  # [K, 1, 1]

        values, positions = _sparse_table(input, with_positions=ctx.needs_input_grad[0])
        corners = []
        for y in (row_lo, row_hi - (1 << level_h)):  # the four corner blocks that cover the bin
            for x in (col_lo, col_hi - (1 << level_w)):
                y, x = y.clamp(0, height - 1), x.clamp(0, width - 1)  # moves only empty bins, masked below
                corners.append((((level_h * _levels(width) + level_w) * num + image) * height + y) * width + x)
        candidates = [values[flat] for flat in corners]  # 4 x [K, PH, PW, C]
        best = torch.maximum(torch.maximum(candidates[0], candidates[1]), torch.maximum(candidates[2], candidates[3]))
        empty = empty[..., None]  # [K, PH, PW, 1]
        output = best.masked_fill(empty, 0).permute(0, 3, 1, 2)  # [K, PH, PW, C] -> [K, C, PH, PW]
        ctx.input_shape = input.shape
        if positions is not None:  # argmax: the earliest position among the corner blocks that hold the max
            first = None
            for flat, value in zip(corners, candidates):
                pos = torch.where(value == best, positions[flat], height * width)
                first = pos if first is None else torch.minimum(first, pos)
            plane = (image[..., None] * channels + torch.arange(channels, device=input.device)) * (height * width)
            argmax = (plane + first).masked_fill(empty, -1).permute(0, 3, 1, 2)  # index into input, -1 if empty
            ctx.save_for_backward(argmax)
        return output.contiguous()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (argmax,) = ctx.saved_tensors
        grad = grad_output.new_zeros(ctx.input_shape.numel())
        has_max = argmax >= 0
        grad.index_add_(0, argmax.clamp(min=0).flatten(), (grad_output * has_max).flatten())
        return grad.view(ctx.input_shape), None, None, None, None


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

"""RoIAlign (Mask R-CNN §3) with the semantics of torchvision.ops.roi_align, in plain tensor operations.

RoI pooling rounds each RoI to whole feature cells; RoIAlign does not. Each bin averages a grid of sample points,
each read from the feature map by bilinear interpolation, so a RoI moved by a fraction of a cell changes the
output smoothly. Notebook: 08_roi_pool_vs_roi_align. torchvision's rules, reproduced exactly:
- corners are scaled by spatial_scale and, with aligned=True, shifted by -0.5 cell (pixel centres);
  with aligned=False a RoI is at least 1 x 1 cell;
- a bin has sampling_ratio x sampling_ratio samples, or, for sampling_ratio <= 0, ceil(roi_h / PH) x
  ceil(roi_w / PW) (adaptive: more samples for larger RoIs);
- a sample further than one cell outside the map reads 0; one within [-1, 0] reads the edge; the output is the
  sum over samples divided by the sample count.

How it is computed: bilinear weights factor into a row weight times a column weight, and so does the grid of
samples. The average over a bin is therefore a weighted sum over rows times a weighted sum over columns:
output[k, c] = A_y[k] @ input[image_k, c] @ A_x[k]^T / count_k, with A_y [K, PH, H] and A_x [K, PW, W] the
summed interpolation weights of the bin's sample rows and columns. Two matrix products, no loop over RoIs or
samples, and the gradient is the transposed products. An adaptive grid can be arbitrarily fine for a huge RoI,
but at most 2 * size + 3 of its samples along an axis land on the map (step >= 0.5 cell), so only those are
enumerated: the shapes stay fixed and nothing is read on the host.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_roi_tensor, check_feature_map, pair

_CHUNK_ELEMENTS = 1 << 24  # RoIs are pooled in chunks so the [RoIs * PH, C * W] product stays near 64 MB (fp32)
# (Measured on a CPU: 16 MB chunks made the 2000-RoI, 512-channel benchmark 1.8x faster but the demo's training
# step 10% slower, its 512 RoIs of 128 channels then split into four products: the detector's case wins.)
_WINDOW_ELEMENTS = 1 << 20  # CPU inference: a chunk's windows hold at most 4 MB (fp32), a size that stays in cache
_WINDOWS_MIN_WORK, _WINDOWS_MIN_CELLS = 1 << 28, 1024  # ... for work and maps this large (_windows_pay)


def _axis_weights(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, size: int, sampling_ratio: int) -> Tensor:
    """Summed bilinear weights of each bin's samples along one axis.

    Args:
        start: [K] RoI start along the axis, feature cells (continuous). bin_size: [K] cells per bin.
        grid: [K] int64 samples per bin along the axis (<= 0 means none).
        pooled: bins along the axis. size: feature-map cells along the axis.
        sampling_ratio: > 0, the fixed grid; <= 0, the grid comes from the RoI size (adaptive).

    Returns:
        [K, pooled, size]: weight of each map row (or column) in each bin, summed over the bin's samples.
    """
    device, dtype = start.device, start.dtype
    bins = torch.arange(pooled, device=device, dtype=dtype)  # [P]
    bin_start = start[:, None] + bins * bin_size[:, None]  # [K, P], as torchvision: start + p * bin
    grid_f = grid.to(dtype)[:, None]  # [K, 1]
    if sampling_ratio <= 0:  # skip the samples before y = -1: only the next 2 * size + 3 (plus slack) can touch the map
        step = torch.where(grid_f > 0, bin_size[:, None] / grid_f.clamp(min=1), torch.ones_like(grid_f))
        # the upper clamp only keeps .long() in range: 2^40, or float16's largest value (2^40 overflows it)
        far = min(2.0**40, torch.finfo(dtype).max)
        first = torch.floor(((-1 - bin_start) / step - 0.5).clamp(min=0, max=far)).long() - 1  # [K, P]
        first, count = first.clamp(min=0), 2 * size + 6
    else:
        first, count = torch.zeros_like(bin_start, dtype=torch.long), sampling_ratio
    sample = first[:, :, None] + torch.arange(count, device=device)  # [K, P, D] sample indices in the bin
    used = sample < grid[:, None, None]
    # y = start + p * bin + (iy + 0.5) * bin / grid, in torchvision's order of operations (same rounding)
    y = bin_start[:, :, None] + ((sample.to(dtype) + 0.5) * bin_size[:, None, None]) / grid_f[:, :, None].clamp(min=1)
    used &= (y >= -1) & (y <= size)
    y = torch.where(used, y, 0).clamp(min=0)  # unused samples get weight 0; parked at row 0 to index safely
    low = torch.floor(y).long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(y), y - low.to(dtype))  # ly; 1 - ly goes to the low row
    weights = torch.zeros(start.shape[0], pooled, size, device=device, dtype=dtype)
    weights.scatter_add_(2, low, (1 - frac) * used)
    weights.scatter_add_(2, high, frac * used)
    return weights


def _pool(input: Tensor, image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """output[k] = rows[k] @ input[image[k]] @ cols[k]^T for every channel, in chunks of RoIs.

    Args:
        input: [N, C, H, W]. image: [K] int64. rows: [K, PH, H]. cols: [K, PW, W].

    Returns:
        [K, C, PH, PW].
    """
    num, channels, height, width = input.shape
    pooled_h, pooled_w = rows.shape[1], cols.shape[1]
    flat_input = input.permute(0, 2, 1, 3).reshape(num * height, channels * width)  # [N*H, C*W]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, pooled_h * channels * width))
    outputs = []
    for begin in range(0, max(1, rows.shape[0]), chunk):  # at least one (maybe empty) chunk: keeps the graph
        r, c, img = rows[begin : begin + chunk], cols[begin : begin + chunk], image[begin : begin + chunk]
        one_hot = (img[:, None] == torch.arange(num, device=img.device)).to(r.dtype)  # [k, N] (F.one_hot syncs)
        r = (one_hot[:, None, :, None] * r[:, :, None, :]).reshape(len(img) * pooled_h, num * height)  # [k*PH, N*H]
        t = (r @ flat_input).view(-1, pooled_h * channels, width)  # [k, PH*C, W]
        outputs.append(t @ c.transpose(1, 2))  # [k, PH*C, PW]
    pooled = outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # contiguous pieces: a plain copy
    return pooled.view(-1, pooled_h, channels, pooled_w).permute(0, 2, 1, 3)  # [K, C, PH, PW]


def _pool_per_image(input: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """_pool for RoIs given per image, L for each: image n's RoIs are rows n * L .. n * L + L - 1, so each image's
    map meets only its own RoIs' weights (_pool's one-hot form multiplies every RoI with every image's map).

    Args:
        input: [N, C, H, W]. rows: [N * L, PH, H]. cols: [N * L, PW, W].

    Returns:
        [N * L, C, PH, PW].
    """
    num, channels, height, width = input.shape
    pooled_h, pooled_w = rows.shape[1], cols.shape[1]
    per_image = rows.shape[0] // num
    planes = input.permute(0, 2, 1, 3).reshape(num, height, channels * width)  # [N, H, C*W]
    rows, cols = rows.view(num, per_image, pooled_h, height), cols.view(num, per_image, pooled_w, width)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, num * pooled_h * channels * width))
    outputs = []
    for begin in range(0, max(1, per_image), chunk):
        r, c = rows[:, begin : begin + chunk], cols[:, begin : begin + chunk]  # [N, l, PH, H], [N, l, PW, W]
        t = (r.reshape(num, -1, height) @ planes).view(-1, pooled_h * channels, width)  # [N*l, PH*C, W]
        t = t @ c.reshape(-1, pooled_w, width).transpose(1, 2)  # [N*l, PH*C, PW]
        outputs.append(t.view(num, -1, pooled_h, channels, pooled_w))  # [N, l, PH, C, PW]
    pooled = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)  # one chunk: no copy
    return pooled.flatten(0, 1).permute(0, 2, 1, 3)  # [N*L, C, PH, PW]


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign, as torchvision.ops.roi_align: same signature, values and gradients.

    Args:
        input: [N, C, H, W] float, the feature map (feature cells).
        boxes: RoIs in image px, xyxy: Tensor[K, 5] with the image index in column 0, or a list of N
            Tensor[L, 4]. Same dtype and device as input.
        output_size: (PH, PW) bins, or one int for both.
        spatial_scale: image px -> feature cells (1/16 for a stride-16 backbone).
        sampling_ratio: samples per bin along each axis; <= 0 means adaptive, ceil(roi size / bins).
        aligned: shift the scaled RoI by -0.5 cell so sample points sit on pixel centres (Detectron2's fix).

    Returns:
        [K, C, PH, PW]. Differentiable in input; like torchvision, not in boxes.
    """
    input = check_feature_map(input)
    rois = as_roi_tensor(boxes, input).detach()
    if input.dtype in (torch.float16, torch.bfloat16):
        # as torchvision: a half-precision map is pooled in float32 (half-precision coordinates would misplace
        # the samples by up to a cell), and the output keeps the input's dtype
        with torch.autocast(input.device.type, enabled=False):
            output = _roi_align(input.float(), boxes, rois.float(), output_size, spatial_scale, sampling_ratio, aligned)
        return output.to(input.dtype)
    # A float32 map under autocast (the detector's, in bfloat16 training): the two products below run in the
    # autocast dtype, as the convolutions around them do; torchvision's kernel pools in float32, which made the
    # demo's training step 1.4x slower (136 against 96 ms). The output keeps the input's dtype, as torchvision's,
    # and the two agree to the autocast dtype's rounding (tests/test_ops.py, under autocast).
    return _roi_align(input, boxes, rois, output_size, spatial_scale, sampling_ratio, aligned).to(input.dtype)


def _roi_align(input: Tensor, boxes: object, rois: Tensor, output_size: int | tuple[int, int], spatial_scale: float,
               sampling_ratio: int, aligned: bool) -> Tensor:
    """roi_align on checked arguments: boxes as given, rois [K, 5] (image index, x1, y1, x2, y2) from them."""
    pooled_h, pooled_w = pair(output_size)
    height, width = input.shape[-2:]
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)  # [K] each, feature cells
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision's legacy behaviour: force malformed RoIs to 1 x 1
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, sampling_ratio, dtype=torch.long)
    else:
        grid_h, grid_w = torch.ceil(roi_h / pooled_h).long(), torch.ceil(roi_w / pooled_w).long()
    count = (grid_h * grid_w).clamp(min=1).to(input.dtype)  # [K]
    # the average's 1 / count goes into the small row weights, not over the [K, C, PH, PW] output
    rows = _axis_weights(y1, roi_h / pooled_h, grid_h, pooled_h, height, sampling_ratio) / count[:, None, None]
    cols = _axis_weights(x1, roi_w / pooled_w, grid_w, pooled_w, width, sampling_ratio)  # [K, PW, W]
    if _windows_pay(input, rows):
        return _pool_in_windows(input, rois[:, 0].long(), rows, cols)
    if _one_block_per_image(boxes, input):  # the layout is known from the shapes alone: no host read
        return _pool_per_image(input, rows, cols)
    return _pool(input, rois[:, 0].long(), rows, cols)


def _windows_pay(input: Tensor, rows: Tensor) -> bool:
    """Pool in windows: on a CPU, outside autograd and tracing, for work large enough to pay for the bands' reads.

    A host read costs nothing on a CPU, and reading each RoI's band of rows and columns lets its products skip the
    rest of the map: for RoIs small next to the map the dense products spend most of their time multiplying zero
    weights (benchmarks/RESULTS.md, roi_align fwd). Timed on one thread, windows won from about 2^28 dense
    multiply-adds on maps of 32 x 32 cells or more (a VGG-16 inference's 300 RoIs on a 38 x 63 map) and lost below
    (the course model's 100 RoIs on a 20 x 22 map): tests/test_ops.py checks which form each takes. On a GPU
    the dense form keeps the pass free of host reads; under autograd its transposed products are the faster
    backward; a traced graph (torch.export, torch.compile, ONNX) needs shapes that do not depend on the RoIs.

    Args:
        input: [N, C, H, W]. rows: [K, PH, H], the RoIs' row weights.
    """
    num_rois, pooled_h, height = rows.shape
    channels, width = input.shape[1], input.shape[3]
    large = num_rois * pooled_h * height * channels * width >= _WINDOWS_MIN_WORK and height * width >= _WINDOWS_MIN_CELLS
    return (large and input.device.type == "cpu" and type(input) is torch.Tensor and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and not (torch.is_grad_enabled() and input.requires_grad))


def _band(weights: Tensor) -> tuple[Tensor, Tensor]:
    """Where each RoI's weights are non-zero along one axis of the map.

    Args:
        weights: [K, P, S], _axis_weights' output.

    Returns:
        first [K] and length [K] (>= 1) of the band of the S cells that some bin of the RoI reads.
    """
    used = weights.ne(0).any(dim=1)  # [K, S]
    cells = torch.arange(weights.shape[2], device=weights.device)
    first = torch.where(used, cells, weights.shape[2]).amin(dim=1)
    last = torch.where(used, cells, -1).amax(dim=1)
    return first.clamp(max=weights.shape[2] - 1), (last - first + 1).clamp(min=1)  # an RoI off the map: 1 cell


def _pool_in_windows(input: Tensor, image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """_pool with each RoI's products restricted to its window, the band of rows times the band of columns its
    weights touch (reads the bands on the host: CPU only, see _windows_pay).

    RoIs are sorted by window area and pooled in chunks that share one window size (the chunk's largest, the
    window moved inside the map where it would cross an edge: the weights outside a band are 0), so small RoIs
    are pooled with small windows; a chunk's windows hold at most _WINDOW_ELEMENTS values.

    Args:
        input: [N, C, H, W]. image: [K] int64. rows: [K, PH, H]. cols: [K, PW, W].

    Returns:
        [K, C, PH, PW] (a channels-last view).
    """
    num, channels, height, width = input.shape
    pooled_h, pooled_w = rows.shape[1], cols.shape[1]
    if rows.shape[0] == 0:
        return input.new_zeros(0, channels, pooled_h, pooled_w)
    cells = input.permute(0, 2, 3, 1).reshape(num * height * width, channels)  # [N*H*W, C]: a C-vector a cell
    row_first, row_count = _band(rows)
    col_first, col_count = _band(cols)
    order = (row_count * col_count).argsort()  # smallest windows first
    counts = list(zip(row_count[order].tolist(), col_count[order].tolist()))
    pooled = input.new_empty(rows.shape[0], pooled_h, pooled_w, channels)  # [K, PH, PW, C]
    begin = 0
    while begin < len(counts):
        end, (h, w) = begin + 1, counts[begin]
        while end < len(counts):  # grow the chunk while its windows, at the largest size, fit the budget
            grown_h, grown_w = max(h, counts[end][0]), max(w, counts[end][1])
            if (end + 1 - begin) * grown_h * grown_w * channels > _WINDOW_ELEMENTS:
                break
            h, w, end = grown_h, grown_w, end + 1
        chunk = order[begin:end]
        row_index = row_first[chunk].clamp(max=height - h)[:, None] + torch.arange(h, device=image.device)  # [k, h]
        col_index = col_first[chunk].clamp(max=width - w)[:, None] + torch.arange(w, device=image.device)  # [k, w]
        cell_index = (image[chunk, None, None] * height + row_index[:, :, None]) * width + col_index[:, None, :]
        window = cells.index_select(0, cell_index.flatten()).view(len(chunk), h, w * channels)  # [k, h, w*C]
        r = rows[chunk].gather(2, row_index[:, None, :].expand(-1, pooled_h, -1))  # [k, PH, h]
        c = cols[chunk].gather(2, col_index[:, None, :].expand(-1, pooled_w, -1))  # [k, PW, w]
        t = (r @ window).view(len(chunk), pooled_h, w, channels)  # [k, PH, w, C]
        pooled.index_copy_(0, chunk, c[:, None] @ t)  # [k, PH, PW, C], in the RoIs' own order
        begin = end
    return pooled.permute(0, 3, 1, 2)  # [K, C, PH, PW]


def _one_block_per_image(boxes: Tensor | list[Tensor], input: Tensor) -> bool:
    """boxes is a list of one [L, 4] tensor per image of input, all of the same length L > 0."""
    return (isinstance(boxes, (list, tuple)) and len(boxes) == input.shape[0]
            and len({b.shape[0] for b in boxes}) == 1 and boxes[0].shape[0] > 0)


class RoIAlign(nn.Module):
    """Module form of roi_align, as torchvision.ops.RoIAlign."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")

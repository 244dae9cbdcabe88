"""settle: greedy NMS's keep decisions for one block of sorted boxes, given who suppresses whom. One op, exact.

Sort the boxes by score and let S[i, j] = 1 when box i comes before box j and IoU(i, j) > the threshold. Greedy
NMS is the recurrence keep[j] = alive[j] and not any(S[i, j] and keep[i] for i < j): each box waits for the fate
of every box before it, and no parallel trick removes the wait (a chain of boxes, each overlapping the next, needs
as many steps as it is long; trained RPNs make chains of 35 among 6000 proposals). So this is one operator
(frcnn_edu::settle), as torchvision's nms is one, with a kernel per device:

- CUDA: a Triton kernel, one launch per call and no host read. One program per row walks the block's boxes in
  order, holding the `removed` flags in registers: box i is kept when nothing removed it, and then its row of S
  removes the boxes it overlaps. The kernel also runs on CPU tensors under Triton's interpreter
  (TRITON_INTERPRET=1), which is how the tests check it without a GPU.
- Every other device (and CUDA without Triton): the fixed point of Cluster-NMS (Zheng et al. 2020,
  arXiv:2005.03572), x <- alive and not any_i(S[i, j] and x[i]), one matrix product per step, until a step changes
  nothing. Two facts make it exact: (a) after t steps the first t boxes are final (box 0 has nobody before it;
  box j reads only boxes before j, final one step earlier), so it stops within W + 1 steps; (b) a step that changes
  nothing is a fixed point of the recurrence, and the recurrence has exactly one (keep[0] is forced, then keep[1],
  ...): greedy NMS's answer. Real boxes settle in a few dozen steps. Whether a step changed anything is read on
  the host every _ROUND steps: on a CPU that is a comparison in memory, not a round-trip to a device; on CUDA
  without Triton it is a sync (the one place the package would make one).
"""
from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with torch's CUDA wheels on Linux; elsewhere CUDA uses the fixed point
    triton = None

_ROUND = 16  # fixed-point steps between two convergence checks (CPU): real blocks settle in one to three rounds


@torch.library.custom_op("frcnn_edu::settle", mutates_args=())
def settle(suppress: Tensor, alive: Tensor) -> Tensor:
    """Greedy NMS's decisions for the boxes of a block, from who suppresses whom.

    Args:
        suppress: [B, W, W] float32 0/1, S[b, i, j] = 1 when box i comes before box j (by decreasing score) and
            suppresses it; zero on and below the diagonal. Any strides (a slice of a larger matrix is fine).
        alive: [B, 1, W] float32 0/1, the boxes that may be kept (dead ones neither survive nor suppress).

    Returns:
        [B, 1, W] float32 0/1, contiguous: 1 for the boxes greedy NMS keeps. Not differentiable (decisions).
    """
    return settle_by_fixed_point(suppress, alive).contiguous()


def settle_by_fixed_point(suppress: Tensor, alive: Tensor) -> Tensor:
    """settle on any device: fixed-point steps until one changes nothing (module docstring). Shapes as settle."""
    x = alive
    while True:
        for _ in range(_ROUND):
            # x @ S counts the kept boxes that suppress each box: alive minus that count, floored at 0, is 1 exactly
            # for an alive box that no kept box suppresses.
            previous, x = x, torch.baddbmm(alive, x, suppress, alpha=-1).clamp_(min=0)
        if torch.equal(x, previous):
            return x


@settle.register_fake
def _(suppress: Tensor, alive: Tensor) -> Tensor:
    return alive.new_empty(alive.shape)  # contiguous, as every kernel returns it (whatever alive's strides)


if triton is not None:
    @triton.jit
    def _settle_kernel(suppress, alive, out, width, stride_b, stride_i, BLOCK: tl.constexpr):
        """One row b of the batch: walk its boxes in order; a box nothing removed is kept and removes its row of S."""
        row = tl.program_id(0)
        offsets = tl.arange(0, BLOCK)
        inside = offsets < width
        removed = 1.0 - tl.load(alive + row * width + offsets, mask=inside, other=0.0)  # dead boxes count as removed
        for i in range(0, width):
            if tl.sum(tl.where(offsets == i, removed, 0.0)) == 0.0:  # box i kept: nothing before it removed it
                overlaps = tl.load(suppress + row * stride_b + i * stride_i + offsets, mask=inside, other=0.0)
                removed = tl.maximum(removed, overlaps)
        tl.store(out + row * width + offsets, 1.0 - removed, mask=inside)

    def settle_by_scan(suppress: Tensor, alive: Tensor) -> Tensor:
        """settle as one Triton launch (CUDA, or CPU tensors under TRITON_INTERPRET=1). Shapes as settle."""
        num_rows, width = suppress.shape[0], suppress.shape[2]
        if suppress.stride(2) != 1:
            suppress = suppress.contiguous()
        alive = alive.contiguous()
        out = torch.empty_like(alive)
        if num_rows and width:
            block = triton.next_power_of_2(width)
            _settle_kernel[(num_rows,)](suppress, alive, out, width, suppress.stride(0), suppress.stride(1),
                                        BLOCK=block, num_warps=warps_for(block))
        return out

    def warps_for(block: int) -> int:
        """Warps per program for a block of `block` boxes: 8 from 2048 boxes (the GPU's block), else 4."""
        return 8 if block >= 2048 else 4

    @settle.register_kernel("cuda")
    def _(suppress: Tensor, alive: Tensor) -> Tensor:
        return settle_by_scan(suppress, alive)

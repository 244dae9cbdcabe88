"""frcnn_edu.ops against torchvision.ops, the independent reference: values and gradients, adversarial inputs.

Parity is checked in float64 to max |difference| < 1e-9 (most ops are bitwise equal; NMS indices must be
identical), on CPU and, when present, on CUDA. Then known numbers worked out by hand, invariants, bad input,
and a check that the sync-free ops never read a tensor on the host. Everything is seeded and small.
"""
from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys

import pytest
import torch
import torchvision.ops as tv

from frcnn_edu import ops

F32, F64 = torch.float32, torch.float64
TOL = 1e-9


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(num: int, seed: int, size: float = 100.0, max_side: float = 30.0, dtype=F64) -> torch.Tensor:
    """[num, 4] xyxy boxes with corners in [0, size] and sides in [0, max_side) (CPU; move them after)."""
    gen = _gen(seed)
    xy = torch.rand(num, 2, generator=gen, dtype=F64) * size
    wh = torch.rand(num, 2, generator=gen, dtype=F64) * max_side
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def degenerate_boxes(dtype=F64) -> torch.Tensor:
    """Zero width, zero height, a point, identical boxes, a box inside another, touching edges, inverted."""
    return torch.tensor([[0, 0, 0, 5], [0, 0, 5, 0], [2, 2, 2, 2], [1, 1, 4, 4], [1, 1, 4, 4], [2, 2, 3, 3],
                         [4, 1, 6, 4], [0, 0, 1e-9, 1], [5, 5, 3, 3], [-2, -3, 1, 1]], dtype=dtype)


def assert_close(ours: torch.Tensor, ref: torch.Tensor, tol: float = TOL):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    torch.testing.assert_close(ours, ref, rtol=0, atol=tol, equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# Boxes: area, IoU, clipping, small boxes
# ---------------------------------------------------------------------------------------------------------------

BOX_SETS = {
    "random": lambda dtype: random_boxes(64, seed=0, dtype=dtype),
    "degenerate": degenerate_boxes,
    "mixed": lambda dtype: torch.cat([random_boxes(20, seed=1, size=6, max_side=3, dtype=dtype),
                                      degenerate_boxes(dtype)]),
}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", BOX_SETS)
def test_box_area_and_iou_parity(device, kind, dtype):
    boxes = BOX_SETS[kind](dtype).to(device)
    other = random_boxes(17, seed=2, size=6, max_side=4, dtype=dtype).to(device)
    assert_close(ops.box_area(boxes), tv.box_area(boxes), tol=0)
    assert_close(ops.box_iou(boxes, other), tv.box_iou(boxes, other), tol=0)  # bitwise: same arithmetic
    assert_close(ops.box_iou(boxes, boxes), tv.box_iou(boxes, boxes), tol=0)


def test_box_iou_known_number(device):
    # [0,0,2,2] and [1,1,3,3] overlap in the unit square [1,2]x[1,2]: inter 1, union 4 + 4 - 1 = 7.
    iou = ops.box_iou(torch.tensor([[0.0, 0, 2, 2]], device=device), torch.tensor([[1.0, 1, 3, 3]], device=device))
    assert iou.shape == (1, 1)
    assert abs(iou.item() - 1 / 7) < 1e-7


def test_box_iou_invariants():
    boxes = random_boxes(200, seed=3)  # positive sides almost surely
    iou = ops.box_iou(boxes, boxes)
    assert torch.equal(iou, iou.T)  # symmetric, bitwise: min/max and + commute
    assert ((iou >= 0) & (iou <= 1)).all()
    torch.testing.assert_close(iou.diagonal(), torch.ones(200, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", BOX_SETS)
def test_clip_and_remove_small_parity(device, kind):
    boxes = (BOX_SETS[kind](F64) * 3 - 20).to(device)  # many boxes cross the image border
    size = (37, 52)  # (height, width), non-square so x and y cannot be swapped silently
    clipped = ops.clip_boxes_to_image(boxes, size)
    assert_close(clipped, tv.clip_boxes_to_image(boxes, size), tol=0)
    assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 0::2] <= 52).all()
    assert (clipped[:, 1::2] >= 0).all() and (clipped[:, 1::2] <= 37).all()
    for min_size in (0.0, 1e-9, 1.0, 3.0, 10.0):
        keep = ops.remove_small_boxes(boxes, min_size)
        assert torch.equal(keep, tv.remove_small_boxes(boxes, min_size))
        mask = ops.small_boxes_mask(boxes, min_size)
        assert torch.equal(torch.nonzero(mask).flatten(), keep)


def test_clip_keeps_batch_shape():
    boxes = random_boxes(12, seed=4).view(2, 6, 4) - 20
    ref = tv.clip_boxes_to_image(boxes.view(-1, 4), (50, 60)).view(2, 6, 4)  # torchvision's takes [N, 4] only
    assert_close(ops.clip_boxes_to_image(boxes, (50, 60)), ref)


# ---------------------------------------------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------------------------------------------

def cluster_boxes(num_clusters: int, per_cluster: int, seed: int, dtype=F64) -> torch.Tensor:
    """Heavy overlap: each cluster is one box jittered by under 10% of its size."""
    gen = _gen(seed)
    centres = random_boxes(num_clusters, seed=seed + 1, size=200, max_side=40).repeat_interleave(per_cluster, 0)
    sides = (centres[:, 2:] - centres[:, :2]).repeat(1, 2) + 5
    return (centres + (torch.rand(centres.shape, generator=gen, dtype=F64) - 0.5) * 0.2 * sides).to(dtype)


def _scores(num: int, seed: int, dtype=F64, levels: int | None = None) -> torch.Tensor:
    scores = torch.rand(num, generator=_gen(seed + 100), dtype=F64)
    if levels is not None:  # exact ties: only `levels` distinct values
        scores = torch.floor(scores * levels) / levels
    return scores.to(dtype)


def check_nms_invariants(boxes, scores, keep, iou_threshold):
    """Sorted by score; kept boxes pairwise IoU <= thr; each removed box has IoU > thr with a better kept box."""
    kept_scores = scores[keep]
    assert (kept_scores[:-1] >= kept_scores[1:]).all()
    iou = tv.box_iou(boxes[keep], boxes[keep]).nan_to_num(0)
    assert (iou.triu(diagonal=1) <= iou_threshold).all()
    order = torch.sort(scores, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=boxes.device)  # visiting position of each box
    removed = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    removed[keep] = False
    removed = torch.nonzero(removed).flatten()
    better = rank[keep][None, :] < rank[removed][:, None]  # [removed, kept]: kept box visited first
    overlaps = tv.box_iou(boxes[removed], boxes[keep]) > iou_threshold
    assert (overlaps & better).any(dim=1).all()


NMS_CASES = {
    "random": lambda dtype: (random_boxes(300, seed=5, dtype=dtype), _scores(300, 5, dtype)),
    "clusters": lambda dtype: (cluster_boxes(12, 25, seed=6, dtype=dtype), _scores(300, 6, dtype)),
    "score_ties": lambda dtype: (cluster_boxes(10, 20, seed=7, dtype=dtype), _scores(200, 7, dtype, levels=4)),
    "all_scores_equal": lambda dtype: (cluster_boxes(5, 10, seed=8, dtype=dtype), torch.ones(50, dtype=dtype)),
    "zero_area": lambda dtype: (torch.cat([degenerate_boxes(dtype), random_boxes(40, seed=9, size=6, dtype=dtype)]),
                                _scores(50, 9, dtype)),
    "empty": lambda dtype: (torch.zeros(0, 4, dtype=dtype), torch.zeros(0, dtype=dtype)),
    "single": lambda dtype: (torch.tensor([[1.0, 2, 3, 4]], dtype=dtype), torch.tensor([0.5], dtype=dtype)),
}


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", NMS_CASES)
def test_nms_parity(device, case, dtype, iou_threshold):
    boxes, scores = (t.to(device) for t in NMS_CASES[case](dtype))
    keep = ops.nms(boxes, scores, iou_threshold)
    # Ties in score are ordered by index on torchvision's CPU kernel; its CUDA kernel may differ, so ties are
    # compared with the CPU reference on every device.
    ref = tv.nms(boxes.cpu(), scores.cpu(), iou_threshold) if "ties" in case or "equal" in case else \
        tv.nms(boxes, scores, iou_threshold).cpu()
    assert keep.dtype == torch.int64 and keep.device == boxes.device
    assert torch.equal(keep.cpu(), ref)
    mask = ops.nms_keep_mask(boxes, scores, iou_threshold)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert torch.equal(torch.nonzero(mask).flatten().cpu(), ref.sort().values)
    if len(boxes) and case != "zero_area":  # NaN IoUs of zero-area pairs never suppress, so skip them there
        check_nms_invariants(boxes.cpu(), scores.cpu(), keep.cpu(), iou_threshold)


# IoU exactly at the threshold must NOT suppress (torchvision: ovr > iou_threshold). torchvision compares the
# float32 IoU with the threshold as a float64, so a float32 threshold that rounds up changes the answer:
# float32(0.3) = 0.300000012 > 0.3 and float32(1/3) = 0.333333343 > 1/3, while float32(0.7) = 0.699999988 < 0.7.
EXACT_THRESHOLD_CASES = [
    # (boxes, iou_threshold, dtype, second box kept?)
    ([[0, 0, 4, 1], [0, 0, 2, 1]], 0.5, F64, True),     # inter 2 / union 4 = 0.5 exactly, in any dtype
    ([[0, 0, 4, 1], [0, 0, 2, 1]], 0.5, F32, True),
    ([[0, 0, 2, 1], [1, 0, 3, 1]], 1 / 3, F64, True),   # inter 1 / union 3: the same division as 1 / 3
    ([[0, 0, 2, 1], [1, 0, 3, 1]], 1 / 3, F32, False),  # float32(1/3) > 1/3: suppressed
    ([[0, 0, 10, 1], [0, 0, 3, 1]], 0.3, F64, True),    # 3 / 10
    ([[0, 0, 10, 1], [0, 0, 3, 1]], 0.3, F32, False),   # float32(0.3) > 0.3: suppressed
    ([[0, 0, 10, 1], [0, 0, 7, 1]], 0.7, F32, True),    # float32(0.7) < 0.7: kept
    ([[0, 0, 10, 1], [0, 0, 7, 1]], 0.7, F64, True),
]


@pytest.mark.parametrize("boxes, iou_threshold, dtype, second_kept", EXACT_THRESHOLD_CASES)
def test_nms_iou_equal_to_threshold(device, boxes, iou_threshold, dtype, second_kept):
    boxes = torch.tensor(boxes, dtype=dtype, device=device)
    scores = torch.tensor([0.9, 0.8], dtype=dtype, device=device)
    expected = torch.tensor([0, 1] if second_kept else [0])
    assert torch.equal(tv.nms(boxes, scores, iou_threshold).cpu(), expected)  # the reference agrees with the comment
    assert torch.equal(ops.nms(boxes, scores, iou_threshold).cpu(), expected)
    assert torch.equal(ops.batched_nms(boxes, scores, torch.zeros(2, dtype=torch.int64, device=device),
                                       iou_threshold).cpu(), expected)
    found_idx, found = ops.first_kept(boxes[None], torch.ones(1, 2, dtype=torch.bool, device=device), iou_threshold, 2)
    assert found[0].tolist() == ([True, True] if second_kept else [True, False])
    assert found_idx[0, : len(expected)].cpu().tolist() == expected.tolist()


def proposal_like(num: int, seed: int, dtype=F32) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposal-like boxes over a 1000 x 600 image: sides 8..400 px, clipped; scores in (0, 1)."""
    gen = _gen(seed)
    centre = torch.rand(num, 2, generator=gen, dtype=F64) * torch.tensor([1000.0, 600.0], dtype=F64)
    side = 8 * torch.exp(torch.rand(num, 2, generator=gen, dtype=F64) * 4)  # 8 * e^[0, 4): 8 .. 437 px
    boxes = torch.cat([centre - side / 2, centre + side / 2], dim=1)
    boxes = tv.clip_boxes_to_image(boxes, (600, 1000))
    return boxes.to(dtype), torch.rand(num, generator=gen, dtype=F64).to(dtype)


def test_nms_12000_boxes_float32(device):
    boxes, scores = (t.to(device) for t in proposal_like(12000, seed=10))
    keep = ops.nms(boxes, scores, 0.7)
    assert torch.equal(keep.cpu(), tv.nms(boxes, scores, 0.7).cpu())


@pytest.mark.parametrize("num, num_classes", [(40, 3), (900, 5), (1001, 4), (1500, 20), (3000, 40)])  # N <= 1000: shift
@pytest.mark.parametrize("dtype", [F32, F64])
def test_batched_nms_parity(device, num, num_classes, dtype):
    # torchvision shifts classes apart ("coordinate trick") for N*4 <= 4000 on CPU and loops over classes above,
    # so both of its paths are compared. idxs mixes classes and images as a detector would (image * L + label).
    boxes, scores = proposal_like(num, seed=num, dtype=dtype)
    gen = _gen(num + 1)
    image = torch.randint(0, 2, (num,), generator=gen)
    idxs = image * num_classes + torch.randint(0, num_classes, (num,), generator=gen)
    boxes, scores, idxs = boxes.to(device), scores.to(device), idxs.to(device)
    for iou_threshold in (0.3, 0.5, 0.7):
        assert torch.equal(ops.batched_nms(boxes, scores, idxs, iou_threshold).cpu(),
                           tv.batched_nms(boxes, scores, idxs, iou_threshold).cpu())


def test_batched_nms_empty(device):
    empty = torch.zeros(0, 4, device=device)
    keep = ops.batched_nms(empty, torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64
    # torchvision returns before looking at the other arguments when there are no boxes
    for ours, ref in ((ops.batched_nms(empty, None, None, 0.5), tv.batched_nms(empty, None, None, 0.5)),
                      (ops.nms(empty, empty[:, 0], 0.5), tv.nms(empty, empty[:, 0], 0.5))):
        assert ours.shape == ref.shape == (0,) and ours.dtype == ref.dtype == torch.int64 and ours.device == ref.device


def chain_boxes(num: int, dtype=F64) -> torch.Tensor:
    """Boxes [i, 0, i + 10, 10]: neighbours have IoU 9/11 > 0.7, boxes two apart 8/12 < 0.7. With scores
    decreasing along the chain, each kept box removes the next one, so greedy NMS keeps every other box and
    must settle the boxes one after another: the deepest chain there is."""
    x = torch.arange(num, dtype=F64)[:, None]
    return torch.cat([x, torch.zeros_like(x), x + 10, torch.full_like(x, 10)], dim=1).to(dtype)


ADVERSARIAL_CASES = {
    "chain_12": lambda: (chain_boxes(12), torch.linspace(1, 0, 12, dtype=F64)),  # short chains settle in a few steps
    "chain_30": lambda: (chain_boxes(30), torch.linspace(1, 0, 30, dtype=F64)),
    "chain_300": lambda: (chain_boxes(300), torch.linspace(1, 0, 300, dtype=F64)),
    "chain_reversed": lambda: (chain_boxes(300), torch.linspace(0, 1, 300, dtype=F64)),
    "identical": lambda: (torch.tensor([[3.0, 4, 20, 30]], dtype=F64).repeat(500, 1), _scores(500, 11)),
    "identical_tied": lambda: (torch.tensor([[3.0, 4, 20, 30]], dtype=F64).repeat(500, 1), torch.ones(500, dtype=F64)),
    "tied_clusters": lambda: (cluster_boxes(40, 50, seed=12), _scores(2000, 12, levels=3)),
}


@pytest.mark.parametrize("case", ADVERSARIAL_CASES)
def test_nms_adversarial_exact(device, case):
    # Exact on chains of any depth: the settle op walks a block's boxes in order (ops/settle.py).
    boxes, scores = (t.to(device) for t in ADVERSARIAL_CASES[case]())
    for iou_threshold in (0.5, 0.7):
        ref = tv.nms(boxes.cpu(), scores.cpu(), iou_threshold)
        assert torch.equal(ops.nms(boxes, scores, iou_threshold).cpu(), ref)
        assert torch.equal(ops.batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64),
                                           iou_threshold).cpu(), ref)


@pytest.mark.parametrize("case", ADVERSARIAL_CASES)
def test_sync_free_nms_exact_on_deep_chains(device, case):
    # The sync-free forms are exact too, on the deepest chains (one suppression after another, 300 long): an
    # earlier design ran a fixed number of parallel steps and lost the tail of such chains (and of a trained
    # RPN's proposals, whose chains reach 35).
    boxes, scores = (t.to(device) for t in ADVERSARIAL_CASES[case]())
    ref = tv.nms(boxes.cpu(), scores.cpu(), 0.7)
    mask = ops.nms_keep_mask(boxes, scores, 0.7).cpu()
    kept = torch.nonzero(mask).flatten()
    assert torch.equal(kept[torch.sort(scores.cpu()[kept], descending=True, stable=True).indices], ref)
    order = torch.sort(scores, descending=True, stable=True).indices
    indices, found = ops.first_kept(boxes[order][None], torch.ones(1, len(boxes), dtype=torch.bool, device=device),
                                    0.7, len(ref))
    assert bool(found.all()) and torch.equal(order[indices[0]].cpu(), ref)


def greedy_reference(suppress: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Greedy NMS's decisions from a suppression matrix, one box at a time: [W, W] 0/1, [W] 0/1 -> [W] 0/1."""
    keep = torch.zeros_like(alive)
    for j in range(len(alive)):
        keep[j] = float(bool(alive[j]) and not bool((suppress[:j, j] * keep[:j]).any()))
    return keep


def random_suppression(rows: int, width: int, seed: int, density: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, W, W] strictly upper triangular 0/1 (a chain along the first superdiagonal in row 0) and alive [B, 1, W]."""
    gen = _gen(seed)
    suppress = (torch.rand(rows, width, width, generator=gen) < density).float().triu_(1)
    suppress[0].diagonal(1).fill_(1)  # row 0: box i suppresses box i + 1, the deepest chain
    return suppress, (torch.rand(rows, 1, width, generator=gen) > 0.1).float()


@pytest.mark.parametrize("density", [0.002, 0.05, 0.5])
def test_settle_equals_greedy_one_box_at_a_time(device, density):
    settle_module = importlib.import_module("frcnn_edu.ops.settle")
    suppress, alive = random_suppression(3, 150, seed=int(density * 1000), density=density)
    out = settle_module.settle(suppress.to(device), alive.to(device)).cpu()
    assert out.shape == alive.shape and out.dtype == torch.float32
    for b in range(3):
        assert torch.equal(out[b, 0], greedy_reference(suppress[b], alive[b, 0]))
    # a slice of a larger matrix (greedy_keep passes the rows below the earlier kept boxes): same answer
    padded = torch.cat([torch.ones(3, 5, 150), suppress], dim=1).to(device)
    assert torch.equal(settle_module.settle(padded[:, 5:], alive.to(device)).cpu(), out)


TRITON_CHECK = """
import torch
import importlib
settle_module = importlib.import_module("frcnn_edu.ops.settle")
gen = torch.Generator().manual_seed(0)
for width, density in ((1, 0.5), (37, 0.3), (130, 0.02), (130, 0.6)):
    suppress = (torch.rand(3, width + 4, width, generator=gen) < density).float().triu_(1 - 4)[:, 4:]
    suppress[0].diagonal(1).fill_(1)
    alive = (torch.rand(3, 1, width, generator=gen) > 0.1).float()
    scanned = settle_module.settle_by_scan(suppress, alive)
    assert torch.equal(scanned, settle_module.settle_by_fixed_point(suppress, alive))
print("triton kernel ok")
"""


def test_settle_triton_kernel_under_the_interpreter():
    """The CUDA kernel, run on CPU tensors by Triton's interpreter, agrees with the fixed point (deep chains,
    dense and sparse overlaps, a strided slice). TRITON_INTERPRET must be set before Triton is imported: a
    fresh process."""
    pytest.importorskip("triton", reason="Triton is not installed (it ships with torch's CUDA wheels on Linux)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "triton kernel ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.parametrize("arch", [80, 90])
def test_settle_triton_kernel_compiles_for_real_gpus(arch):
    """The interpreter runs the kernel's Python; a GPU runs what Triton's compiler makes of it, which refuses more
    (types, control flow on tensors, layouts). Compile it ahead of time, as settle_by_scan launches it, for A100
    (sm_80) and H100/H200 (sm_90) down to machine code with Triton's own ptxas: no GPU needed."""
    triton = pytest.importorskip("triton", reason="Triton is not installed (it ships with torch's CUDA wheels on Linux)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    settle_module = importlib.import_module("frcnn_edu.ops.settle")
    # the smallest block, and the GPU's 2048-box block of a [B, 2048, 2048] matrix (batch strides past 2^31: i64)
    for block, stride_b in ((16, "i32"), (2048, "i64")):
        signature = {"suppress": "*fp32", "alive": "*fp32", "out": "*fp32", "width": "i32", "stride_b": stride_b,
                     "stride_i": "i32", "BLOCK": "constexpr"}
        source = ASTSource(settle_module._settle_kernel, signature, constexprs={"BLOCK": block})
        kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                options={"num_warps": settle_module.warps_for(block)})
        assert f".target sm_{arch}" in kernel.asm["ptx"] and len(kernel.asm["cubin"]) > 0
        assert kernel.metadata.num_warps == settle_module.warps_for(block)


def test_settle_is_one_op_and_traceable():
    """One dispatched op (as torchvision's nms is one), with a fake kernel so that torch.export and
    torch.compile can trace through it."""
    settle_module = importlib.import_module("frcnn_edu.ops.settle")
    suppress, alive = random_suppression(2, 40, seed=3, density=0.1)
    assert _count_ops(lambda: settle_module.settle(suppress, alive)) == 1
    torch.library.opcheck(settle_module.settle, (suppress, alive), test_utils=("test_schema", "test_faketensor"))
    # alive as a strided view (greedy_keep passes slices): the output is contiguous all the same, as the fake says
    # (torch.compile's Inductor asserts the real strides against the fake's)
    strided = alive.transpose(0, 2).contiguous().transpose(0, 2)
    assert settle_module.settle(suppress, strided).is_contiguous()
    torch.library.opcheck(settle_module.settle, (suppress, strided), test_utils=("test_faketensor",))


def _count_ops(fn) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


def test_first_kept_op_count_does_not_grow_with_k(monkeypatch):
    # Issue 13: every dispatched op is a kernel launch on a GPU. first_kept's count depends on P / _BLOCK only,
    # not on k (the old pick-by-pick loop dispatched ~23 ops per kept box: 46011 for 12000 -> 2000). Counted
    # with the GPU's block size (the CPU's smaller blocks trade more ops for less arithmetic).
    nms_module = importlib.import_module("frcnn_edu.ops.nms")
    monkeypatch.setattr(nms_module, "_BLOCK_CPU", nms_module._BLOCK)
    boxes, scores = proposal_like(5000, seed=13)
    order = scores.argsort(descending=True)
    boxes, valid = boxes[order][None], torch.ones(1, 5000, dtype=torch.bool)
    counts = {k: _count_ops(lambda: ops.first_kept(boxes, valid, 0.7, k)) for k in (1, 300, 2000)}
    assert len(set(counts.values())) == 1 and counts[2000] < 300, counts


@pytest.mark.parametrize("k", [0, 1, 5, 40])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.7])
def test_first_kept_is_the_head_of_nms(device, k, iou_threshold):
    num_rows, num = 4, 60
    boxes = torch.stack([cluster_boxes(6, 10, seed=20 + r) for r in range(num_rows)])  # [B, P, 4]
    valid = torch.rand(num_rows, num, generator=_gen(30)) > 0.25
    valid[3] = False  # a row with nothing valid
    indices, found = ops.first_kept(boxes.to(device), valid.to(device), iou_threshold, k)
    assert indices.shape == found.shape == (num_rows, k)
    assert indices.dtype == torch.int64 and found.dtype == torch.bool
    scores = torch.arange(num, 0, -1, dtype=F64)  # boxes are sorted: decreasing score along P
    for r in range(num_rows):
        where = torch.nonzero(valid[r]).flatten()
        ref = where[tv.nms(boxes[r][where], scores[where], iou_threshold)][:k]  # first k survivors, into P
        assert found[r].tolist() == [True] * len(ref) + [False] * (k - len(ref))
        assert torch.equal(indices[r, : len(ref)].cpu(), ref)


# ---------------------------------------------------------------------------------------------------------------
# RoI pooling and RoIAlign
# ---------------------------------------------------------------------------------------------------------------

MAP_SHAPE = (3, 4, 11, 14)  # N, C, H, W: small, non-square, odd and even sides
ROI_KINDS = ["random", "outside", "zero_size", "smaller_than_bin", "half_cells", "huge", "inverted"]


def make_rois(kind: str, spatial_scale: float, seed: int, num: int = 24) -> torch.Tensor:
    """[num, 5] float64 RoIs (batch index, x1, y1, x2, y2) in image px, for a map of MAP_SHAPE."""
    gen = _gen(seed)
    n, _, h, w = MAP_SHAPE
    img = torch.tensor([w, h], dtype=F64) / spatial_scale  # image size in px, (width, height)
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=F64)
    if kind == "random":  # anywhere from half an image before to 1.2 images after: partly outside
        start = (rand(num, 2) * 1.7 - 0.5) * img
        end = start + rand(num, 2) * img
    elif kind == "outside":  # wholly outside, past either edge
        start = torch.where(rand(num, 1) < 0.5, img * (1.1 + rand(num, 2)), -img * (0.5 + rand(num, 2)))
        end = start + rand(num, 2) * img * 0.3
    elif kind == "zero_size":  # x1 == x2 and/or y1 == y2
        start = rand(num, 2) * img
        end = torch.where(rand(num, 2) < 0.7, start, start + rand(num, 2) * img / 2)
    elif kind == "smaller_than_bin":  # under a cell wide, so many bins share a cell or are empty
        start = rand(num, 2) * img
        end = start + rand(num, 2) * 0.9 / spatial_scale
    elif kind == "half_cells":  # odd integers, some negative: x * 0.5 lands exactly on .5 (rounding ties)
        start = torch.randint(-6, 2 * w, (num, 2), generator=gen).to(F64) * 2 + 1
        end = start + torch.randint(0, 8, (num, 2), generator=gen).to(F64) * 2
    elif kind == "huge":  # far larger than the map: many adaptive RoIAlign samples, most off the map
        start = -img * (1 + 3 * rand(num, 2))
        end = img * (2 + 3 * rand(num, 2))
    elif kind == "inverted":  # x2 < x1 or y2 < y1
        start = rand(num, 2) * img
        end = start - rand(num, 2) * img / 3
    else:
        raise ValueError(kind)
    image = torch.randint(0, n, (num, 1), generator=gen).to(F64)
    return torch.cat([image, start, end], dim=1)


def feature_map(seed: int, values: str = "random") -> torch.Tensor:
    gen = _gen(seed)
    if values == "random":
        return torch.randn(MAP_SHAPE, generator=gen, dtype=F64)
    if values == "integers":  # few distinct values: ties inside almost every bin
        return torch.randint(-2, 3, MAP_SHAPE, generator=gen).to(F64)
    return torch.zeros(MAP_SHAPE, dtype=F64)  # all tied


def check_roi_parity(ours_fn, ref_fn, input: torch.Tensor, boxes, seed: int = 0):
    """Forward values and input gradients (for a random upstream gradient) agree to TOL."""
    x_ours = input.clone().requires_grad_(True)
    x_ref = input.clone().requires_grad_(True)
    out_ours, out_ref = ours_fn(x_ours, boxes), ref_fn(x_ref, boxes)
    assert_close(out_ours, out_ref)
    grad_out = torch.randn(out_ref.shape, generator=_gen(seed), dtype=out_ref.dtype).to(out_ref.device)
    out_ours.backward(grad_out)
    out_ref.backward(grad_out)
    assert_close(x_ours.grad, x_ref.grad)
    return out_ours


@pytest.mark.parametrize("output_size", [2, (3, 5)])
@pytest.mark.parametrize("spatial_scale", [1 / 16, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("kind", ROI_KINDS)
def test_roi_pool_parity(device, kind, spatial_scale, output_size):
    rois = make_rois(kind, spatial_scale, seed=ROI_KINDS.index(kind)).to(device)
    input = feature_map(seed=1).to(device)
    out = check_roi_parity(lambda x, b: ops.roi_pool(x, b, output_size, spatial_scale),
                           lambda x, b: tv.roi_pool(x, b, output_size, spatial_scale), input, rois)
    module = ops.RoIPool(output_size, spatial_scale)
    assert torch.equal(module(input, rois), out.detach())


@pytest.mark.parametrize("values", ["integers", "zeros"])
@pytest.mark.parametrize("kind", ["random", "half_cells", "huge"])
def test_roi_pool_ties_pick_the_first_max(device, kind, values):
    # With ties in a bin the gradient goes to the first maximum in row-major order (torchvision's argmax).
    rois = make_rois(kind, 0.5, seed=40).to(device)
    input = feature_map(seed=2, values=values).to(device)
    check_roi_parity(lambda x, b: ops.roi_pool(x, b, (3, 4), 0.5), lambda x, b: tv.roi_pool(x, b, (3, 4), 0.5),
                     input, rois)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_roi_ops_float32(device, op):
    # The model runs in float32. Max pooling is exact in any dtype; an integer upstream gradient keeps every
    # sum exact too, so roi_pool must match bitwise. RoIAlign sums products: float32 rounding only.
    rois = torch.cat([make_rois(kind, 0.25, seed=45, num=8) for kind in ROI_KINDS[:-1]]).float().to(device)
    input = feature_map(seed=6).float().to(device)
    ours, ref = (ops.roi_pool, tv.roi_pool) if op == "roi_pool" else (ops.roi_align, tv.roi_align)
    x_ours, x_ref = input.clone().requires_grad_(True), input.clone().requires_grad_(True)
    out_ours, out_ref = ours(x_ours, rois, (3, 4), 0.25), ref(x_ref, rois, (3, 4), 0.25)
    grad = torch.randint(-3, 4, out_ref.shape, generator=_gen(7)).float().to(device)
    out_ours.backward(grad)
    out_ref.backward(grad)
    tol = 0 if op == "roi_pool" else 1e-5
    assert_close(out_ours, out_ref, tol=tol)
    assert_close(x_ours.grad, x_ref.grad, tol=tol)


ALIGN_SAMPLING = [-1, 0, 1, 2, 3]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", ALIGN_SAMPLING)
@pytest.mark.parametrize("spatial_scale", [1 / 16, 0.25, 1.0])
@pytest.mark.parametrize("kind", ROI_KINDS)
def test_roi_align_parity(device, kind, spatial_scale, sampling_ratio, aligned):
    if kind == "inverted" and aligned and sampling_ratio <= 0:
        pytest.skip("torchvision's roi_align crashes on x2 < x1 with aligned=True and an adaptive grid")
    output_size = (3, 5) if sampling_ratio % 2 else 2
    rois = make_rois(kind, spatial_scale, seed=50 + ROI_KINDS.index(kind), num=12).to(device)
    input = feature_map(seed=3).to(device)
    check_roi_parity(lambda x, b: ops.roi_align(x, b, output_size, spatial_scale, sampling_ratio, aligned),
                     lambda x, b: tv.roi_align(x, b, output_size, spatial_scale, sampling_ratio, aligned),
                     input, rois)


@pytest.mark.parametrize("window_elements", [None, 1])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", ALIGN_SAMPLING)
@pytest.mark.parametrize("kind", ROI_KINDS)
def test_roi_align_windows_parity(kind, sampling_ratio, aligned, window_elements, monkeypatch):
    # CPU inference pools each RoI on its window of the map, the rows and columns its weights touch, sorted by
    # window size into chunks; a budget of 1 element forces one RoI a chunk. Equal to torchvision's, and the path
    # is taken only outside autograd (with gradients on, the dense products: test_roi_align_parity).
    if kind == "inverted" and aligned and sampling_ratio <= 0:
        pytest.skip("torchvision's roi_align crashes on x2 < x1 with aligned=True and an adaptive grid")
    module = importlib.import_module("frcnn_edu.ops.roi_align")
    monkeypatch.setattr(module, "_WINDOWS_MIN_WORK", 0)  # these maps and RoIs are small: take the path anyway
    monkeypatch.setattr(module, "_WINDOWS_MIN_CELLS", 0)
    if window_elements is not None:
        monkeypatch.setattr(module, "_WINDOW_ELEMENTS", window_elements)
    calls, original = [], module._pool_in_windows

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(module, "_pool_in_windows", counted)
    rois = make_rois(kind, 0.25, seed=80 + ROI_KINDS.index(kind), num=12)
    input = feature_map(seed=5)
    for boxes in (rois, [rois[rois[:, 0] == i, 1:] for i in range(MAP_SHAPE[0])]):
        with torch.no_grad():
            ours = ops.roi_align(input, boxes, (3, 5), 0.25, sampling_ratio, aligned)
        assert_close(ours, tv.roi_align(input, boxes, (3, 5), 0.25, sampling_ratio, aligned))
    assert len(calls) == 2
    ops.roi_align(input.requires_grad_(True), rois, (3, 5), 0.25, sampling_ratio, aligned)
    assert len(calls) == 2  # autograd: the dense products


def test_roi_align_windows_only_for_large_work(monkeypatch):
    # Small work stays dense (a few reads would cost more than the zeros they skip): the course model's 100 RoIs of
    # 128 channels on a 20 x 22 map; a VGG-16 inference's 300 RoIs of 512 channels on a 38 x 63 map takes windows.
    module = importlib.import_module("frcnn_edu.ops.roi_align")
    calls, original = [], module._pool_in_windows

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(module, "_pool_in_windows", counted)
    for shape, num in (((1, 128, 20, 22), 100), ((1, 512, 38, 63), 300)):
        input = torch.randn(shape, generator=_gen(90))
        rois = make_rois("random", 1 / 16, seed=91, num=num).float()
        rois[:, 0] = 0
        with torch.no_grad():
            assert_close(ops.roi_align(input, rois, 7, 1 / 16, 2), tv.roi_align(input, rois, 7, 1 / 16, 2), tol=1e-5)
    assert calls == [torch.Size((1, 512, 38, 63))]


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_roi_ops_list_form_and_many_images(device, op):
    # Six images, one of them without RoIs: the list-of-[L, 4] form equals the [K, 5] form and torchvision.
    gen = _gen(60)
    input = torch.randn(6, 3, 9, 12, generator=gen, dtype=F64).to(device)
    counts = [3, 0, 5, 1, 7, 2]
    boxes = [make_rois("random", 0.5, seed=61 + i, num=c)[:, 1:].to(device) for i, c in enumerate(counts)]
    rois = torch.cat([torch.cat([torch.full((c, 1), float(i), dtype=F64, device=device), b], dim=1)
                      for i, (c, b) in enumerate(zip(counts, boxes))])
    ours, ref = (ops.roi_pool, tv.roi_pool) if op == "roi_pool" else (ops.roi_align, tv.roi_align)
    out = check_roi_parity(lambda x, b: ours(x, b, (2, 3), 0.5), lambda x, b: ref(x, b, (2, 3), 0.5), input, boxes)
    assert_close(ours(input, rois, (2, 3), 0.5), out.detach(), tol=0)
    module = ops.RoIPool((2, 3), 0.5) if op == "roi_pool" else ops.RoIAlign((2, 3), 0.5, -1)
    assert_close(module(input, boxes), out.detach(), tol=0)


@pytest.mark.parametrize("chunk_elements", [None, 1])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_roi_align_one_block_per_image(device, sampling_ratio, chunk_elements, monkeypatch):
    # Equal RoI counts per image (the detector's layout) take the per-image matrix products; a chunk size
    # of 1 element forces one RoI per chunk. Values and gradients still equal torchvision's.
    # The [K, 5] form takes the one-hot products, chunked the same way.
    if chunk_elements is not None:
        monkeypatch.setattr(importlib.import_module("frcnn_edu.ops.roi_align"), "_CHUNK_ELEMENTS", chunk_elements)
    input = torch.randn(3, 4, 9, 12, generator=_gen(70), dtype=F64).to(device)
    boxes = [make_rois("random", 0.5, seed=71 + i, num=5)[:, 1:].to(device) for i in range(3)]
    for form in (boxes, torch.cat([torch.cat([torch.full((5, 1), i, dtype=F64, device=device), b], dim=1)
                                   for i, b in enumerate(boxes)])):
        check_roi_parity(lambda x, b: ops.roi_align(x, b, (2, 3), 0.5, sampling_ratio),
                         lambda x, b: tv.roi_align(x, b, (2, 3), 0.5, sampling_ratio), input, form)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_roi_ops_empty(device, op):
    input = feature_map(seed=4).to(device)
    ours, ref = (ops.roi_pool, tv.roi_pool) if op == "roi_pool" else (ops.roi_align, tv.roi_align)
    for boxes in (torch.zeros(0, 5, dtype=F64, device=device), [torch.zeros(0, 4, dtype=F64, device=device)] * 3):
        out = check_roi_parity(lambda x, b: ours(x, b, 7, 1 / 16), lambda x, b: ref(x, b, 7, 1 / 16), input, boxes)
        assert out.shape == (0, MAP_SHAPE[1], 7, 7)


def test_roi_pool_op_count_does_not_grow_with_rois():
    # Every dispatched op is a kernel launch on a GPU: the forward is a fixed sequence of ops over all RoIs at
    # once (the old per-chunk lookups and per-level table steps dispatched ~600 for 128 RoIs on VGG-16's map),
    # and autograd's backward is a scatter-add to the argmax.
    input = torch.randn(1, 512, 38, 63, generator=_gen(80), requires_grad=True)
    counts = {}
    for num in (1, 128, 300):
        rois = torch.cat([torch.zeros(num, 1), random_boxes(num, seed=81, size=1000, max_side=400, dtype=F32)], 1)
        out = []
        forward = _count_ops(lambda: out.append(ops.roi_pool(input, rois, 7, 1 / 16)))
        counts[num] = forward, _count_ops(lambda: out[0].sum().backward())
    assert len(set(counts.values())) == 1 and counts[1][0] < 160 and counts[1][1] < 20, counts


def test_roi_pool_shape_ignores_roi_size():
    input = feature_map(seed=5)
    for kind in ROI_KINDS:
        for output_size, expected in ((7, (7, 7)), ((3, 5), (3, 5))):
            rois = make_rois(kind, 0.25, seed=70, num=9)
            assert ops.roi_pool(input, rois, output_size, 0.25).shape == (9, MAP_SHAPE[1], *expected)


def test_roi_pool_d2l_hand_case(device):
    # d2l §14.8 (rcnn.md): X = arange(16) as a 4x4 map, 2x2 output, spatial_scale 0.1.
    #   X = [[ 0,  1,  2,  3],
    #        [ 4,  5,  6,  7],
    #        [ 8,  9, 10, 11],
    #        [12, 13, 14, 15]]
    # torchvision's rules: corners round(v * 0.1) (halves away from zero), end cell inclusive,
    # bin ph covers rows [floor(ph * h / 2), ceil((ph + 1) * h / 2)) + y1.
    # RoI (0, 0, 20, 20) -> cells x1 = y1 = 0, x2 = y2 = 2: h = w = 2 - 0 + 1 = 3, bin size 1.5:
    #   rows [0, 2) and [1, 3), columns the same -> max of X[0:2, 0:2] = 5, X[0:2, 1:3] = 6,
    #   X[1:3, 0:2] = 9, X[1:3, 1:3] = 10.
    # RoI (0, 10, 30, 30) -> x1 = 0, y1 = 1, x2 = y2 = 3: w = 4 (bins of 2), h = 3 (bins of 1.5):
    #   columns [0, 2), [2, 4); rows [0, 2) + 1 = [1, 3) and [1, 3) + 1 = [2, 4)
    #   -> max of X[1:3, 0:2] = 9, X[1:3, 2:4] = 11, X[2:4, 0:2] = 13, X[2:4, 2:4] = 15.
    x = torch.arange(16.0, device=device).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32, device=device)
    expected = torch.tensor([[[[5.0, 6], [9, 10]]], [[[9, 11], [13, 15]]]], device=device)
    assert torch.equal(ops.roi_pool(x, rois, (2, 2), 0.1), expected)
    assert torch.equal(tv.roi_pool(x, rois, (2, 2), 0.1), expected)


def test_roi_pool_rounds_halves_away_from_zero():
    # torch.round rounds halves to even (0.5 -> 0, -2.5 -> -2); torchvision's kernel uses C's round (away from
    # zero: 0.5 -> 1, -2.5 -> -3). X[r, c] = 6r + c on a 5x6 map, RoI (-5, 1, 5, 5) px, spatial_scale 0.5:
    # corners (-2.5, 0.5, 2.5, 2.5) -> cells x1 = -3, y1 = 1, x2 = y2 = 3; w = 7 (bins of 3.5), h = 3 (1.5).
    # Columns [-3, 1) -> [0, 1) and [0, 4); rows [1, 3) and [2, 4): maxima 6*2+0, 6*2+3, 6*3+0, 6*3+3.
    # Rounding to even would start at row 0 (y1 = 0, h = 4, rows [0, 2)) and give 6 in the first bin.
    x = torch.arange(30.0, dtype=F64).reshape(1, 1, 5, 6)
    rois = torch.tensor([[0, -5, 1, 5, 5]], dtype=F64)
    expected = torch.tensor([[[[12.0, 15], [18, 21]]]], dtype=F64)
    assert torch.equal(ops.roi_pool(x, rois, 2, 0.5), expected)
    assert torch.equal(tv.roi_pool(x, rois, 2, 0.5), expected)
    for rois in ([[0, 5, 1, 9, 7]], [[0, -1, -1, 1, 1]], [[0, -3, -3, -1, -1]]):
        rois = torch.tensor(rois, dtype=F64)
        assert_close(ops.roi_pool(x, rois, 2, 0.5), tv.roi_pool(x, rois, 2, 0.5), tol=0)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: the message names the argument and what was received
# ---------------------------------------------------------------------------------------------------------------

def _boxes(n=3):
    return random_boxes(n, seed=80, dtype=F32)


BAD_CALLS = [
    ("nms boxes [3, 5]", lambda: ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5), ValueError, ["boxes", "(3, 5)"]),
    ("nms int boxes", lambda: ops.nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5),
     TypeError, ["boxes", "int64"]),
    ("nms scores [4]", lambda: ops.nms(_boxes(), torch.zeros(4), 0.5), ValueError, ["scores", "(4,)"]),
    ("nms boxes list", lambda: ops.nms([[0, 0, 1, 1]], torch.zeros(1), 0.5), TypeError, ["boxes", "list"]),
    ("nms_keep_mask boxes [3]", lambda: ops.nms_keep_mask(torch.zeros(3), torch.zeros(3), 0.5),
     ValueError, ["boxes", "(3,)"]),
    ("batched_nms idxs [2]", lambda: ops.batched_nms(_boxes(), torch.zeros(3), torch.zeros(2, dtype=torch.int64), 0.5),
     ValueError, ["idxs", "(2,)"]),
    ("box_iou boxes2 [2, 3]", lambda: ops.box_iou(_boxes(), torch.zeros(2, 3)), ValueError, ["boxes2", "(2, 3)"]),
    ("box_area fmt", lambda: ops.box_area(_boxes(), fmt="yxyx"), ValueError, ["fmt", "yxyx"]),
    ("first_kept boxes [2, 5, 3]", lambda: ops.first_kept(torch.zeros(2, 5, 3), torch.ones(2, 5, dtype=torch.bool),
                                                          0.5, 2), ValueError, ["boxes", "(2, 5, 3)"]),
    ("roi_pool [K, 4] tensor", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5), torch.zeros(3, 4), 2),
     ValueError, ["boxes", "(3, 4)"]),
    ("roi_pool int input", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5, dtype=torch.int64), torch.zeros(3, 5), 2),
     TypeError, ["input", "int64"]),
    ("roi_pool 3-d input", lambda: ops.roi_pool(torch.zeros(2, 5, 5), torch.zeros(3, 5), 2),
     ValueError, ["input", "(2, 5, 5)"]),
    ("roi_pool rois float64", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5), torch.zeros(3, 5, dtype=F64), 2),
     TypeError, ["boxes", "float64", "float32"]),
    ("roi_pool list of [L, 5]", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5), [torch.zeros(3, 5)], 2),
     ValueError, ["boxes[0]", "(3, 5)"]),
    ("roi_pool output_size 0", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5), torch.zeros(3, 5), 0),
     ValueError, ["output_size", "0"]),
    ("roi_pool boxes str", lambda: ops.roi_pool(torch.zeros(1, 2, 5, 5), "boxes", 2), TypeError, ["boxes", "str"]),
    ("roi_align [K, 4] tensor", lambda: ops.roi_align(torch.zeros(1, 2, 5, 5), torch.zeros(3, 4), 2),
     ValueError, ["boxes", "(3, 4)"]),
    ("roi_align int input", lambda: ops.roi_align(torch.zeros(1, 2, 5, 5, dtype=torch.uint8), torch.zeros(3, 5), 2),
     TypeError, ["input", "uint8"]),
    ("roi_align rois float16",
     lambda: ops.roi_align(torch.zeros(1, 2, 5, 5), torch.zeros(3, 5, dtype=torch.float16), 2),
     TypeError, ["boxes", "float16"]),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_culprit(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# The same mistakes made with torchvision: it raises another type (RuntimeError from its kernels, AssertionError
# from its checks, IndexError/AttributeError from the first line that trips); ours must be an instance of it too.
TV_BAD_CALLS = {
    "nms boxes [3, 5]": lambda: tv.nms(torch.zeros(3, 5), torch.zeros(3), 0.5),
    "nms int boxes": lambda: tv.nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5),
    "nms scores [4]": lambda: tv.nms(_boxes(), torch.zeros(4), 0.5),
    "nms boxes list": lambda: tv.nms([[0, 0, 1, 1]], torch.zeros(1), 0.5),
    "batched_nms idxs [2]": lambda: tv.batched_nms(_boxes(), torch.zeros(3), torch.zeros(2, dtype=torch.int64), 0.5),
    "box_iou boxes2 [2, 3]": lambda: tv.box_iou(_boxes(), torch.zeros(2, 3)),
    "box_area fmt": lambda: tv.box_area(_boxes(), fmt="yxyx"),
    "roi_pool [K, 4] tensor": lambda: tv.roi_pool(torch.zeros(1, 2, 5, 5), torch.zeros(3, 4), 2),
    "roi_pool int input": lambda: tv.roi_pool(torch.zeros(1, 2, 5, 5, dtype=torch.int64), torch.zeros(3, 5), 2),
    "roi_pool 3-d input": lambda: tv.roi_pool(torch.zeros(2, 5, 5), torch.zeros(3, 5), 2),
    "roi_pool rois float64": lambda: tv.roi_pool(torch.zeros(1, 2, 5, 5), torch.zeros(3, 5, dtype=F64), 2),
    "roi_pool list of [L, 5]": lambda: tv.roi_pool(torch.zeros(1, 2, 5, 5), [torch.zeros(3, 5)], 2),
    "roi_pool boxes str": lambda: tv.roi_pool(torch.zeros(1, 2, 5, 5), "boxes", 2),
    "roi_align [K, 4] tensor": lambda: tv.roi_align(torch.zeros(1, 2, 5, 5), torch.zeros(3, 4), 2),
    "roi_align int input": lambda: tv.roi_align(torch.zeros(1, 2, 5, 5, dtype=torch.uint8), torch.zeros(3, 5), 2),
    "roi_align rois float16":
        lambda: tv.roi_align(torch.zeros(1, 2, 5, 5), torch.zeros(3, 5, dtype=torch.float16), 2),
}
# No torchvision counterpart: first_kept is ours; torchvision's roi_pool accepts output_size 0 (an empty output),
# ours refuses it.


@pytest.mark.parametrize("name", TV_BAD_CALLS)
def test_bad_input_is_also_torchvisions_error_type(name):
    with pytest.raises(Exception) as tv_info:
        TV_BAD_CALLS[name]()
    ours = {c[0]: c for c in BAD_CALLS}[name]
    with pytest.raises(ours[2]) as info:
        ours[1]()
    assert isinstance(info.value, type(tv_info.value)), (type(info.value).__mro__, type(tv_info.value))


# ---------------------------------------------------------------------------------------------------------------
# torchvision fidelity: integer boxes, fmt=, float16/bfloat16, autocast, empty inputs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8, torch.float16, F32, F64])
def test_box_area_and_iou_dtypes_and_formats(device, dtype, fmt):
    # torchvision 0.29: integer boxes give integer areas (int32 at least, int64 kept) and float32 IoU; float16
    # gives float32; fmt="xywh" and "cxcywh" describe the same boxes differently. Same dtypes, same bits.
    boxes = torch.cat([random_boxes(30, seed=14, size=60, max_side=40), degenerate_boxes()]).round()
    other = random_boxes(9, seed=15, size=60, max_side=40).round()
    boxes, other = boxes.to(dtype).to(device), other.to(dtype).to(device)
    assert_close(ops.box_area(boxes, fmt=fmt), tv.box_area(boxes, fmt=fmt), tol=0)
    assert_close(ops.box_iou(boxes, other, fmt=fmt), tv.box_iou(boxes, other, fmt=fmt), tol=0)
    assert_close(ops.box_iou(boxes, other, fmt), tv.box_iou(boxes, other, fmt), tol=0)


@pytest.mark.parametrize("op", ["box_area", "box_iou", "clip", "remove_small", "small_mask", "nms", "nms_keep_mask",
                                "batched_nms", "roi_pool", "roi_align"])
def test_empty_inputs_like_torchvision(device, op):
    empty = torch.zeros(0, 4, device=device)
    none = torch.zeros(0, device=device)
    maps = torch.zeros(0, 2, 5, 5, device=device), torch.zeros(0, 5, device=device)  # no images, no RoIs
    calls = {
        "box_area": lambda m: m.box_area(empty),
        "box_iou": lambda m: m.box_iou(empty, torch.ones(2, 4, device=device)),
        "clip": lambda m: m.clip_boxes_to_image(empty, (5, 5)),
        "remove_small": lambda m: m.remove_small_boxes(empty, 1.0),
        "small_mask": lambda m: torch.nonzero(m.small_boxes_mask(empty, 1.0)).flatten() if m is ops
        else m.remove_small_boxes(empty, 1.0),
        "nms": lambda m: m.nms(empty, none, 0.5),
        "nms_keep_mask": lambda m: torch.nonzero(m.nms_keep_mask(empty, none, 0.5)).flatten() if m is ops
        else m.nms(empty, none, 0.5),
        "batched_nms": lambda m: m.batched_nms(empty, None, None, 0.5),
        "roi_pool": lambda m: m.roi_pool(*maps, 2),
        "roi_align": lambda m: m.roi_align(*maps, 2),
    }
    ours, ref = calls[op](ops), calls[op](tv)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype and ours.device == ref.device


def _half_rois(dtype):
    return torch.cat([make_rois(kind, 0.5, seed=16, num=6) for kind in ROI_KINDS[:-1]]).to(dtype)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_roi_ops_half_precision(device, op, sampling_ratio, dtype):
    # float16: torchvision's CPU kernels compute in float16 too, so compare directly. bfloat16: its CPU kernels
    # refuse it, so compare with torchvision in float32 on the same (rounded) values. Tolerances: a few ulps of the
    # dtype at the map's values (|x| < 4: float16 ulp 2^-8), summed over the samples; bfloat16 keeps 8 significant
    # bits, so sample positions some 30 cells out move by up to 1/8 cell in its arithmetic. Max pooling only picks
    # values: roi_pool is exact in any dtype. (sampling_ratio=-1 in float16 used to overflow a clamp.)
    if op == "roi_pool" and sampling_ratio == 2:
        pytest.skip("roi_pool has no sampling ratio")
    input = feature_map(seed=17).to(dtype).to(device)
    rois = _half_rois(dtype).to(device)
    call = {"roi_pool": lambda m, x, b: m.roi_pool(x, b, (3, 4), 0.5),
            "roi_align": lambda m, x, b: m.roi_align(x, b, (3, 4), 0.5, sampling_ratio)}[op]
    ref_dtype = dtype if dtype == torch.float16 or device.type == "cuda" else F32
    x_ours = input.clone().requires_grad_(True)
    x_ref = input.to(ref_dtype).requires_grad_(True)
    out_ours, out_ref = call(ops, x_ours, rois), call(tv, x_ref, rois.to(ref_dtype))
    grad = torch.randint(-2, 3, out_ref.shape, generator=_gen(18)).to(device)
    out_ours.backward(grad.to(dtype))
    out_ref.backward(grad.to(ref_dtype))
    assert out_ours.dtype == x_ours.grad.dtype == dtype
    tol = 0 if op == "roi_pool" else (0.02 if dtype == torch.float16 else 0.25)
    torch.testing.assert_close(out_ours.float(), out_ref.float(), rtol=0, atol=tol)
    torch.testing.assert_close(x_ours.grad.float(), x_ref.grad.float(), rtol=0, atol=5 * tol)


@pytest.mark.parametrize("dtype", [F32, torch.float16, torch.bfloat16])
def test_roi_align_under_autocast(device, dtype):
    # torchvision's autocast kernel runs roi_align in float32 and returns the input's dtype. Ours returns the
    # input's dtype too, and pools a half-precision map in float32; a float32 map's products run in the autocast
    # dtype, as the convolutions around them (1.4x on the demo's training step), so they agree to its rounding.
    input = feature_map(seed=19).to(dtype).to(device)
    rois = _half_rois(dtype).to(device)
    autocast_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    with torch.autocast(device.type, dtype=autocast_dtype):
        ours = ops.roi_align(input, rois, (3, 4), 0.5, -1)
        ref = tv.roi_align(input, rois, (3, 4), 0.5, -1)
    assert ours.dtype == ref.dtype == dtype
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2**-6, atol=0.02)  # bfloat16 keeps 8 bits: 2^-8


# ---------------------------------------------------------------------------------------------------------------
# No host round-trips: the sync-free ops never read a tensor on the host
# ---------------------------------------------------------------------------------------------------------------

HOST_READS = ["item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"]


@pytest.fixture
def no_host_reads(monkeypatch):
    """Make every Python-level tensor read raise (STYLE.md: "No host reads"), for the duration of a test."""
    def forbid(name):
        def read(*args, **kwargs):
            raise AssertionError(f"host read: Tensor.{name}")
        return read
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbid(name))


def test_no_host_reads(no_host_reads):
    boxes, scores = proposal_like(300, seed=90, dtype=F32)
    ops.nms_keep_mask(boxes, scores, 0.7)
    ops.first_kept(boxes.view(3, 100, 4), torch.ones(3, 100, dtype=torch.bool), 0.7, 10)
    ops.small_boxes_mask(boxes, 1e-3)
    ops.box_iou(boxes, boxes)
    ops.box_area(boxes)
    ops.clip_boxes_to_image(boxes, (600, 1000))
    input = feature_map(seed=91)
    rois = torch.cat([make_rois(kind, 0.25, seed=92) for kind in ROI_KINDS])
    ops.roi_pool(input, rois, 7, 0.25)  # no grad: no argmax bookkeeping
    x = input.clone().requires_grad_(True)
    ops.roi_pool(x, rois, 7, 0.25).sum().backward()
    for sampling_ratio, aligned in itertools.product(ALIGN_SAMPLING, (False, True)):
        x = input.clone().requires_grad_(True)
        ops.roi_align(x, rois, 7, 0.25, sampling_ratio, aligned).sum().backward()


@pytest.mark.parametrize("block", [1, 7, 64])
def test_first_kept_any_block_size_equals_one_block(monkeypatch, block):
    """first_kept settles _BLOCK boxes at a time; any block size picks the same boxes as a single block."""

    nms_module = importlib.import_module("frcnn_edu.ops.nms")
    gen = torch.Generator().manual_seed(0)
    centres, sides = torch.rand(2, 1500, 2, generator=gen) * 500, torch.rand(2, 1500, 2, generator=gen) * 80 + 1
    boxes = torch.cat([centres - sides, centres + sides], dim=-1)
    valid = torch.rand(2, 1500, generator=gen) > 0.1
    for name in ("_BLOCK", "_BLOCK_CPU"):  # whatever the device
        monkeypatch.setattr(nms_module, name, block)
    row_by_row = nms_module.first_kept(boxes, valid, 0.7, 200)
    for name in ("_BLOCK", "_BLOCK_CPU"):
        monkeypatch.setattr(nms_module, name, 1 << 20)
    dense = nms_module.first_kept(boxes, valid, 0.7, 200)
    assert torch.equal(row_by_row[1], dense[1])
    assert torch.equal(row_by_row[0][row_by_row[1]], dense[0][dense[1]])

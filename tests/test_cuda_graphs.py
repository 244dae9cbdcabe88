"""CUDA-graph readiness (issue 13): FasterRCNN's training step and inference run as CUDA graphs.

On a GPU: a whole training step (forward, backward, optimizer step) and an inference are captured in one
torch.cuda.CUDAGraph each, replayed on new data copied into the captured (static) inputs, and agree with eager
calls; torch.compile(mode="reduce-overhead") (Inductor's CUDA graphs) agrees too; and a training step raises
nothing under torch.cuda.set_sync_debug_mode("error"). These skip cleanly without CUDA.

What inference captures: model(images) ends in transform.postprocess, which builds torchvision's ragged
per-image lists with one nonzero per image, a host read that no graph can hold. The graph holds
model.detect_padded(images) instead: the same detections with fixed shapes (boxes [N, D, 4], scores, labels,
valid [N, D]); the ragged step, if wanted, stays eager.

The recipe is torch.cuda.graph's documented whole-network capture (bench_opcount.capture): warm up on a side
stream, zero_grad(set_to_none=True) so the backward allocates the gradients from the graph's pool, capture, then
copy new data into the static inputs and replay. The random sampling of anchors and RoIs (torch.rand on the
default CUDA generator) is graph-safe: a replay draws what an eager step draws after the same manual_seed.
On the CPU the same helpers run without the capture: the static-input plumbing, and that nothing in the step
is of a kind a capture refuses (a host read, or host data copied to the device).
"""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from frcnn_edu import FasterRCNN, FasterRCNNConfig
from frcnn_edu.instruments.syncs import HiddenSyncCounter

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Inductor's and the graphs' performance hints
SIZE = (128, 160)  # a fixed image size: a graph replays fixed shapes
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CLOSE = dict(rtol=1e-4, atol=1e-5)  # a replay runs eager's kernels, but atomics in some backwards reorder sums


def build(device: torch.device) -> tuple[FasterRCNN, torch.optim.Optimizer]:
    """The tiny model with few proposals (a fast step), seeded; SGD with momentum (a state to keep in the graph)."""
    cfg = FasterRCNNConfig.tiny_cpu(min_size=min(SIZE), max_size=max(SIZE), rpn_pre_nms_top_n_train=120,
                                    rpn_post_nms_top_n_train=40, rpn_pre_nms_top_n_test=120, rpn_post_nms_top_n_test=20)
    torch.manual_seed(0)
    model = FasterRCNN(3, "tiny", cfg, check_inputs=False).to(device)  # check_inputs reads the targets: a sync
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def clone(model: FasterRCNN, optimizer: torch.optim.Optimizer) -> tuple[FasterRCNN, torch.optim.Optimizer]:
    """An independent copy of the model and of the optimizer's state (momentum buffers), for an eager reference."""
    twin = copy.deepcopy(model)
    twin_optimizer = torch.optim.SGD(twin.parameters(), **optimizer.defaults)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # else the momentum buffers are shared
    return twin, twin_optimizer


def batch(device: torch.device, seed: int) -> tuple[list[torch.Tensor], list[dict]]:
    """One [3, 128, 160] image in [0, 1] and its 3 boxes (xyxy orig px) and labels: fixed shapes, seeded values."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(3, *SIZE, generator=gen)
    corner = torch.rand(3, 2, generator=gen) * torch.tensor([100.0, 70.0])
    boxes = torch.cat([corner, corner + 20 + 30 * torch.rand(3, 2, generator=gen)], dim=1)  # [3, 4], in the image
    labels = torch.randint(1, 3, (3,), generator=gen)
    return [image.to(device)], [dict(boxes=boxes.to(device), labels=labels.to(device))]


def load(images: list[torch.Tensor], targets: list[dict], new_images, new_targets) -> None:
    """Copy a new batch into the static inputs, in place: a graph reads its inputs from fixed addresses."""
    for image, new in zip(images, new_images):
        image.copy_(new)
    for target, new in zip(targets, new_targets):
        for key in target:
            target[key].copy_(new[key])


def training_step(model, optimizer, images, targets):
    """A closure for one full step; returns the losses (in a capture: static tensors each replay overwrites)."""
    def step() -> dict:
        optimizer.zero_grad(set_to_none=True)
        losses = model(images, targets)
        sum(losses.values()).backward()
        optimizer.step()
        return losses
    return step


def seeded(fn, seed: int = 1):
    """fn's result after torch.manual_seed(seed): the same random anchor and RoI samples for a replay and eager."""
    torch.manual_seed(seed)
    return fn()


# ---- CPU: the plumbing, and nothing a capture would refuse ----

def test_static_inputs_carry_new_data():
    """A step on static inputs after load() equals a step given the new batch directly, parameters included."""
    device = torch.device("cpu")
    model, optimizer = build(device)
    images, targets = batch(device, seed=0)
    step = training_step(model, optimizer, images, targets)
    step()  # as the warm-up before a capture: momentum buffers now exist
    reference, reference_optimizer = clone(model, optimizer)
    new_images, new_targets = batch(device, seed=1)
    load(images, targets, new_images, new_targets)
    losses = seeded(step)
    expected = seeded(training_step(reference, reference_optimizer, new_images, new_targets))
    torch.testing.assert_close(losses, expected, rtol=0, atol=0)
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_no_host_read_in_step_or_fixed_size_inference(load_benchmark):
    """A capture fails on a host read: none in a training step, none in model.detect_padded."""
    infer = load_benchmark("bench_opcount").detections_fn
    model, optimizer = build(torch.device("cpu"))
    images, targets = batch(torch.device("cpu"), seed=0)
    with HiddenSyncCounter() as hidden:
        training_step(model, optimizer, images, targets)()
        model.eval()
        detections = infer(model, images)()
    assert hidden.ops == []
    assert len({t.shape[:2] for t in detections}) == 1 and detections[0].shape[0] == 1  # all [N, D, ...], N = 1


def test_no_host_data_copied_to_the_device_in_a_step():
    """torch.tensor(list, device=cuda) copies from pageable host memory and waits for it: a capture refuses it.

    On the CPU such data shows as aten.lift_fresh of a tensor with a dimension (a 0-d Python scalar in an indexed
    assignment, `valid[i, :n] = True`, is lifted too, but the GPU fills with it, no copy).
    """
    lifted = []

    class Lifts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.lift_fresh.default and out.dim() > 0:
                lifted.append(tuple(out.shape))
            return out

    model, optimizer = build(torch.device("cpu"))
    images, targets = batch(torch.device("cpu"), seed=0)
    with Lifts():
        training_step(model, optimizer, images, targets)()
    assert lifted == []


# ---- CUDA ----

@pytest.mark.cuda
@needs_cuda
def test_training_step_graph_replays_as_eager(load_benchmark):
    device = torch.device("cuda")
    model, optimizer = build(device)
    images, targets = batch(device, seed=0)
    graph, losses = load_benchmark("bench_opcount").capture(training_step(model, optimizer, images, targets))
    reference, reference_optimizer = clone(model, optimizer)  # the capture ran nothing: weights after the warm-up
    new_images, new_targets = batch(device, seed=1)
    load(images, targets, new_images, new_targets)
    seeded(graph.replay)
    expected = seeded(training_step(reference, reference_optimizer, new_images, new_targets))
    torch.testing.assert_close(losses, expected, **CLOSE)
    for mine, theirs in zip(model.parameters(), reference.parameters()):  # the optimizer step was replayed too
        torch.testing.assert_close(mine, theirs, **CLOSE)


@pytest.mark.cuda
@needs_cuda
def test_inference_graph_replays_as_eager(load_benchmark):
    bench = load_benchmark("bench_opcount")
    device = torch.device("cuda")
    model, _optimizer = build(device)
    model.eval()
    images, _targets = batch(device, seed=0)
    graph, detections = bench.capture(bench.detections_fn(model, images))
    new_images, _targets = batch(device, seed=1)
    load(images, [], new_images, [])
    graph.replay()
    expected = bench.detections_fn(model, new_images)()
    torch.testing.assert_close(detections, expected, **CLOSE)


@pytest.mark.cuda
@needs_cuda
def test_reduce_overhead_compile_matches_eager():
    """torch.compile(mode="reduce-overhead") records CUDA graphs (on the 2nd call) and replays them (3rd on).

    fallback_random makes Inductor draw torch.rand as eager does, so both sample the same anchors and RoIs.
    """
    from torch._dynamo.utils import counters
    device = torch.device("cuda")
    model, _optimizer = build(device)
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, mode="reduce-overhead")
    images, targets = batch(device, seed=0)
    counters.clear()
    with torch._inductor.config.patch(fallback_random=True):
        for call in range(3):
            losses = seeded(lambda: compiled(images, targets), seed=call)
            sum(losses.values()).backward()
            expected = seeded(lambda: reference(images, targets), seed=call)
            sum(expected.values()).backward()
            torch.testing.assert_close({k: v.clone() for k, v in losses.items()}, expected, **CLOSE)
        model.eval()
        reference.eval()
        detect = torch.compile(model.detect_padded, mode="reduce-overhead")  # forward's ragged lists: not graphable
        with torch.no_grad():
            for _call in range(3):
                found, expected = detect(images), reference.detect_padded(images)
                for name in ("boxes", "scores", "labels", "valid"):
                    torch.testing.assert_close(getattr(found, name).clone(), getattr(expected, name), **CLOSE)
    assert counters["inductor"]["cudagraph_skips"] == 0  # Inductor logs why when it falls back to plain kernels
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, **CLOSE)


@pytest.mark.cuda
@needs_cuda
def test_training_step_does_not_sync():
    """set_sync_debug_mode("error") raises at a synchronising call (its docs: it may miss some)."""
    device = torch.device("cuda")
    model, optimizer = build(device)
    images, targets = batch(device, seed=0)
    step = training_step(model, optimizer, images, targets)
    step()  # lazy initialisation (cuDNN handles, optimizer state) may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")

"""frcnn_edu.model: parity with torchvision's FasterRCNN, no host round-trips, clear errors, and learning (one
image overfits). The stages' own cases are in test_anchors, test_rpn, test_proposals, test_head."""
from __future__ import annotations

import copy
import importlib
import math

import pytest
import torch

from frcnn_edu import FasterRCNN, FasterRCNNConfig
from frcnn_edu.instruments.syncs import HiddenSyncCounter, count_python_reads
from frcnn_edu.instruments.twin import torchvision_twin
from frcnn_edu.ops import box_iou


# ---------------------------------------------------------------- parity with torchvision
def test_eval_detections_match_torchvision():
    torch.manual_seed(0)
    # torchvision's RPN drops boxes under 1e-3 px after its pre-NMS top-n; with top-n >= all anchors the order
    # of the two steps does not matter, so the two pipelines see the same candidates.
    cfg = FasterRCNNConfig.tiny_cpu(rpn_min_size=1e-3, rpn_pre_nms_top_n_test=100_000, rpn_post_nms_top_n_test=80)
    model = FasterRCNN(3, "tiny", cfg).eval()
    with torch.no_grad():  # sharper, more varied scores than the paper's tiny init, so rankings are unambiguous
        model.box_predictor.cls_score.weight.normal_(std=0.3)
        model.box_predictor.bbox_pred.weight.normal_(std=0.05)
        model.rpn.bbox_pred.weight.normal_(std=0.05)
        model.rpn.cls_logits.weight.normal_(std=0.3)
    twin = torchvision_twin(model).eval()
    images = [torch.rand(3, 160, 240), torch.rand(3, 256, 256)]  # exact rescale factors: 2.0 and 1.25
    with torch.no_grad():
        ours, theirs = model(images), twin(images)
    total = 0
    for a, b in zip(ours, theirs):
        assert a["boxes"].shape == b["boxes"].shape
        total += a["boxes"].shape[0]
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=0)
        # float32 sums in another order can swap two detections of near-equal scores: match each box to a box of
        # the other list with the same label and score (to 1e-4), in any order
        same = ((a["boxes"][:, None] - b["boxes"][None]).abs().amax(dim=2) <= 1e-3) & (
            a["labels"][:, None] == b["labels"][None]) & ((a["scores"][:, None] - b["scores"][None]).abs() <= 1e-4)
        assert same.any(dim=1).all() and same.any(dim=0).all()
        assert same.diagonal().float().mean() > 0.9  # and nearly all in the same order
    assert total > 20  # the comparison is not vacuous


# ---------------------------------------------------------------- the same on a GPU
def fixed_keys(*shape, device=None, dtype=None, **_):
    """torch.rand's stand-in for the samplers: keys a fixed function of the position, equal on every device."""
    size = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
    position = torch.arange(math.prod(size), dtype=torch.float64)
    keys = torch.frac(torch.sin(position * 12.9898 + 1) * 43758.5453)
    return keys.view(size).to(device=device, dtype=dtype or torch.float32)


def step_and_detections(model: FasterRCNN, device: str) -> tuple[dict, dict, object]:
    """A float64 copy of model on `device`: one training step's losses and gradients on _batch() (on the CPU,
    by name), then its detect_padded on the same images."""
    model = copy.deepcopy(model).double().to(device).train()
    images, targets = _batch()
    images = [image.double().to(device) for image in images]
    targets = [{"boxes": t["boxes"].double().to(device), "labels": t["labels"].to(device)} for t in targets]
    losses = model(images, targets)
    sum(losses.values()).backward()
    grads = {name: p.grad.cpu() for name, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        detections = model.eval().detect_padded(images)
    return {k: v.detach().cpu() for k, v in losses.items()}, grads, detections


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backbone", ["tiny", "vgg16"])
def test_cuda_equals_the_cpu(backbone, monkeypatch):
    """The same weights and images on a GPU and on the CPU, in float64 so that no NMS, matching or sampling
    decision can flip on rounding, and the samplers' keys equal on both: the same losses, gradients (every
    parameter's) and detections. The GPU runs its own kernels: Triton's NMS scan, cuDNN, the ops' CUDA paths."""
    monkeypatch.setattr(torch, "rand", fixed_keys)
    torch.manual_seed(0)
    model = FasterRCNN(3, backbone, FasterRCNNConfig.tiny_cpu(min_size=192, max_size=256), check_inputs=False)
    cpu, cuda = step_and_detections(model, "cpu"), step_and_detections(model, "cuda")
    torch.testing.assert_close(cuda[0], cpu[0], rtol=1e-7, atol=1e-10)
    assert cuda[1].keys() == cpu[1].keys() and len(cpu[1]) > 10
    torch.testing.assert_close(cuda[1], cpu[1], rtol=1e-6, atol=1e-9)  # the backward's atomics add in any order
    assert torch.equal(cuda[2].valid.cpu(), cpu[2].valid) and torch.equal(cuda[2].labels.cpu(), cpu[2].labels)
    torch.testing.assert_close(cuda[2].boxes.cpu(), cpu[2].boxes, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(cuda[2].scores.cpu(), cpu[2].scores, rtol=1e-7, atol=1e-10)
    assert cpu[2].valid.sum() > 10  # the comparison is not vacuous


# ---------------------------------------------------------------- host round-trips
def _batch():
    torch.manual_seed(0)
    images = [torch.rand(3, 192, 256), torch.rand(3, 256, 200)]
    targets = [dict(boxes=torch.tensor([[10.0, 20, 120, 150], [60, 40, 100, 90]]), labels=torch.tensor([1, 2])),
               dict(boxes=torch.tensor([[30.0, 30, 90, 200]]), labels=torch.tensor([2]))]
    return images, targets


@pytest.fixture
def device_path(monkeypatch):
    """The forward pass a GPU runs, here on the CPU: without CPU inference's RoIAlign windows, which read each
    RoI's band on the host by design (ops/roi_align.py, _windows_pay)."""
    monkeypatch.setattr(importlib.import_module("frcnn_edu.ops.roi_align"), "_windows_pay", lambda *args: False)


@pytest.mark.parametrize("roi_pool", ["pool", "align"])
def test_no_host_round_trips(roi_pool, device_path):
    images, targets = _batch()
    model = FasterRCNN(3, "tiny", FasterRCNNConfig.tiny_cpu(roi_pool=roi_pool), check_inputs=False)
    model(images, targets)  # warm-up
    with count_python_reads() as reads, HiddenSyncCounter() as hidden:
        losses = model(images, targets)
        sum(losses.values()).backward()
    assert reads == [] and hidden.ops == [], (reads, hidden.ops)
    model.eval()
    with torch.no_grad(), count_python_reads() as reads, HiddenSyncCounter() as hidden:
        model(images)
    assert reads == []
    assert hidden.count <= len(images), hidden.ops  # the ragged per-image output: one nonzero per image


def test_detect_padded_is_forward_without_the_ragged_lists(device_path):
    images, _ = _batch()
    torch.manual_seed(1)
    model = FasterRCNN(3, "tiny", FasterRCNNConfig.tiny_cpu(box_score_thresh=0.0)).eval()
    with torch.no_grad(), count_python_reads() as reads, HiddenSyncCounter() as hidden:
        padded = model.detect_padded(images)
    assert reads == [] and hidden.ops == []  # no host read at all: capturable and exportable
    assert padded.boxes.shape == (2, model.config.box_detections_per_img, 4)
    with torch.no_grad():
        lists = model(images)
    for i, detections in enumerate(lists):
        count = len(detections["scores"])
        assert count > 0 and padded.valid[i].tolist() == [True] * count + [False] * (padded.valid.shape[1] - count)
        for key, name in (("boxes", "boxes"), ("scores", "scores"), ("labels", "labels")):
            assert torch.equal(getattr(padded, name)[i, :count], detections[key]), key
    with pytest.raises(ValueError, match="needs eval mode"):
        model.train().detect_padded(images)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("images, targets, message", [
    ([torch.rand(1, 3, 64, 64)], None, r"images\[0\] must be a \[3, H, W\] tensor, got \(1, 3, 64, 64\)"),
    ([torch.zeros(3, 64, 64, dtype=torch.uint8)], None, r"images\[0\] must be a float tensor"),
    ([torch.rand(3, 64, 64)], [dict(labels=torch.tensor([1]))], r"targets\[0\].*missing 'boxes'"),
    ([torch.rand(3, 64, 64)], [dict(boxes=torch.tensor([[5.0, 5, 4, 9]]), labels=torch.tensor([1]))],
     r"targets\[0\]\['boxes'\]\[0\] = \[5.0, 5.0, 4.0, 9.0\]: expected x2 > x1"),
    ([torch.rand(3, 64, 64)], [dict(boxes=torch.tensor([[1.0, 1, 9, 9]]), labels=torch.tensor([3]))],
     r"targets\[0\]\['labels'\]\[0\] = 3: expected 1..2"),
    ([torch.rand(3, 64, 64)], [dict(boxes=torch.tensor([[1.0, 1, 9, 9]]), labels=torch.tensor([1.0]))],
     r"targets\[0\]\['labels'\] must be an int64 tensor"),
])
def test_bad_input_names_the_culprit(images, targets, message):
    model = FasterRCNN(3, "tiny")
    if targets is None:
        model.eval()
    with pytest.raises((ValueError, TypeError), match=message):
        model(images, targets)


def test_training_needs_targets_and_bad_config_is_named():
    with pytest.raises(ValueError, match="targets are required"):
        FasterRCNN(3, "tiny")([torch.rand(3, 32, 32)])
    with pytest.raises(ValueError, match="rpn_fg_iou_thresh must be in"):
        FasterRCNNConfig(rpn_fg_iou_thresh=1.5)
    with pytest.raises(ValueError, match="num_classes counts the background"):
        FasterRCNN(1, "tiny")


def test_test_scale_rescales_only_at_test_time():
    model = FasterRCNN(3, "tiny", FasterRCNNConfig.tiny_cpu(test_scale=1.5))
    image, target = torch.rand(3, 200, 300), dict(boxes=torch.tensor([[10.0, 20, 60, 90]]), labels=torch.tensor([1]))
    _, trace = model.forward_trace([image], [target])
    assert trace["batch"].image_sizes == [(320, 480)]  # training: min_size 320
    _, trace = model.eval().forward_trace([image])
    assert trace["batch"].image_sizes == [(480, 720)]  # test: 1.5 x 320 (the longer side under 1.5 x 512)
    with pytest.raises(ValueError, match="test_scale=1.0"):
        torchvision_twin(model)
    with pytest.raises(ValueError, match="test_scale must be > 0"):
        FasterRCNNConfig(test_scale=0)


def test_negative_image_trains():
    model = FasterRCNN(3, "tiny")
    losses = model([torch.rand(3, 128, 128)], [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    sum(losses.values()).backward()


# ---------------------------------------------------------------- learning
def test_one_image_overfits():
    torch.manual_seed(0)
    image = torch.rand(3, 128, 128) * 0.3
    image[:, 30:80, 20:60] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]  # one red box
    target = dict(boxes=torch.tensor([[20.0, 30, 60, 80]]), labels=torch.tensor([1]))
    model = FasterRCNN(2, "tiny", FasterRCNNConfig.tiny_cpu(min_size=128, max_size=128))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    first = None
    for step in range(300):
        losses = model([image], [target])
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first
    model.eval()
    with torch.no_grad():
        det = model([image])[0]
    assert det["labels"][0] == 1
    assert box_iou(det["boxes"][:1], target["boxes"])[0, 0] >= 0.9

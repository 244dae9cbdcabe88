"""Device placement without a GPU: the model and every public op, run on fake CUDA tensors, make CUDA results.

A FakeTensorMode runs each op's shape and device rules and no kernel, so tensors can live on "cuda" on a machine
without one. It refuses what a GPU refuses: a tensor with dimensions on the CPU meeting one on CUDA raises, as
it would on a GPU (a 0-d CPU scalar is allowed, as there). So the CPU tests catch, before any GPU run, a tensor
the forward pass creates on the default device instead of its inputs'. A ShapeEnv lets the ops that return
data-dependent sizes (nms, the ragged per-image detections) run with symbolic sizes.

What this cannot reach: the backward. The autograd engine sets up a thread per device it meets and asks the CUDA
driver for that, so a backward on fake CUDA tensors fails without a GPU. Its device placement is checked where a
GPU is lent (tests/test_cuda_graphs.py, benchmarks/gpu_check.sh).
"""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch.nn.utils.stateless import _reparametrize_module

from frcnn_edu import FasterRCNN, FasterRCNNConfig, ops

CUDA = torch.device("cuda", 0)


@pytest.fixture
def fake_cuda():
    """A fake mode in which tensors may be created on CUDA; every tensor used inside must come from it."""
    with FakeTensorMode(allow_non_fake_inputs=False, shape_env=ShapeEnv()) as mode:
        yield mode


def on_cuda(model: FasterRCNN, mode: FakeTensorMode) -> dict:
    """Fake CUDA copies of the model's parameters and buffers (non-persistent ones too), by name."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {name: mode.from_tensor(t).to(CUDA).requires_grad_(t.requires_grad) for name, t in named}


def devices(tensors) -> set:
    return {t.device for t in tensors}


def test_the_fake_mode_refuses_a_cpu_tensor_beside_a_cuda_one(fake_cuda):
    """The check has teeth: a CPU tensor with a dimension beside a CUDA one raises, as on a GPU."""
    on_device = torch.zeros(3, device=CUDA)
    with pytest.raises(RuntimeError, match="devices"):  # "on the same device" (torch 2.14), "two different devices"
        on_device + torch.arange(3)
    assert (on_device + torch.tensor(2.0)).device == CUDA  # a 0-d CPU scalar is allowed, as on a GPU


@pytest.mark.parametrize("backbone", ["tiny", "vgg16"])
def test_model_keeps_every_tensor_on_the_images_device(fake_cuda, backbone):
    """Training losses, detect_padded and forward's per-image lists, for two images of different sizes."""
    model = FasterRCNN(3, backbone, FasterRCNNConfig.tiny_cpu(min_size=128, max_size=160), check_inputs=False)
    images = [torch.rand(3, 128, 160, device=CUDA), torch.rand(3, 120, 150, device=CUDA)]
    targets = [dict(boxes=torch.tensor([[10.0, 10, 60, 70], [30, 40, 100, 110]], device=CUDA),
                    labels=torch.tensor([1, 2], device=CUDA))] * 2
    with _reparametrize_module(model, on_cuda(model, fake_cuda)):
        losses = model(images, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
        assert devices(losses.values()) == {CUDA}
        model.eval()
        padded = model.detect_padded(images)
        assert devices([padded.boxes, padded.scores, padded.labels, padded.valid]) == {CUDA}
        detections = model(images)
    assert len(detections) == 2
    assert devices(t for image in detections for t in image.values()) == {CUDA}


def test_every_public_op_keeps_its_inputs_device(fake_cuda):
    """Each op of frcnn_edu.ops (the same list as torchvision.ops') on CUDA boxes, scores and feature maps."""
    corners = torch.rand(50, 2, device=CUDA) * 100
    boxes = torch.cat([corners, corners + 5 + torch.rand(50, 2, device=CUDA) * 40], dim=1)  # [50, 4] xyxy
    scores = torch.rand(50, device=CUDA)
    categories = torch.randint(0, 3, (50,), device=CUDA)
    features = torch.rand(2, 8, 20, 20, device=CUDA)
    rois = torch.cat([torch.randint(0, 2, (50, 1), device=CUDA).float(), boxes], dim=1)  # [50, 5] (batch index, xyxy)
    outputs = {
        "box_area": ops.box_area(boxes), "box_iou": ops.box_iou(boxes, boxes[:7]),
        "clip_boxes_to_image": ops.clip_boxes_to_image(boxes, (90, 120)),
        "remove_small_boxes": ops.remove_small_boxes(boxes, 20.0), "small_boxes_mask": ops.small_boxes_mask(boxes, 20.0),
        "nms": ops.nms(boxes, scores, 0.5), "batched_nms": ops.batched_nms(boxes, scores, categories, 0.5),
        "nms_keep_mask": ops.nms_keep_mask(boxes, scores, 0.5),
        **dict(zip(("first_kept (indices)", "first_kept (found)"),
                   ops.first_kept(boxes[scores.argsort(descending=True)][None], scores[None] > 0.1, 0.5, 10))),
        "roi_align": ops.roi_align(features, rois, (7, 7), 1 / 16, 2, True),
        "roi_align (box list, adaptive)": ops.roi_align(features, [boxes, boxes[:9]], 7, 0.5, -1),
        "RoIAlign": ops.RoIAlign(7, 1 / 16, 2)(features, rois),
        "roi_pool": ops.roi_pool(features, rois, 7, 1 / 16), "RoIPool": ops.RoIPool((7, 7), 1 / 16)(features, [boxes]),
    }
    assert {name.split(" ")[0] for name in outputs} == set(ops.__all__)
    assert {name: out.device for name, out in outputs.items()} == {name: CUDA for name in outputs}

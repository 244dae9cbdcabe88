"""The model: known numbers, hand-made target cases, invariants, parity with torchvision's FasterRCNN, no host
round-trips, clear errors, and learning (one image overfits)."""
from __future__ import annotations

import math

import pytest
import torch

from frcnn_edu import FasterRCNN, FasterRCNNConfig
from frcnn_edu.anchors import AnchorGenerator, base_anchors
from frcnn_edu.ops import box_iou
from frcnn_edu.proposals import generate_proposals
from frcnn_edu.rpn import label_anchors, sample_balanced
from frcnn_edu.syncs import HiddenSyncCounter, count_python_reads
from frcnn_edu.twin import torchvision_twin


# ---------------------------------------------------------------- anchors
def test_paper_anchors_known_numbers():
    anchors = base_anchors((128, 256, 512), (0.5, 1.0, 2.0), dtype=torch.float64)
    assert anchors.shape == (9, 4)  # FRCNN §3.3: k = 9
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(w * h, torch.tensor([128.0**2, 256.0**2, 512.0**2] * 3, dtype=torch.float64))
    torch.testing.assert_close(h / w, torch.tensor([0.5] * 3 + [1.0] * 3 + [2.0] * 3, dtype=torch.float64))
    # hand computed: size 128, ratio 0.5 -> w = 128 / sqrt(0.5) = 181.02, h = 128 * sqrt(0.5) = 90.51
    torch.testing.assert_close(anchors[0], torch.tensor([-64 * math.sqrt(2), -32 * math.sqrt(2),
                                                         64 * math.sqrt(2), 32 * math.sqrt(2)], dtype=torch.float64))


def test_anchor_grid_count_and_centres():
    gen = AnchorGenerator((128.0, 256.0, 512.0), (0.5, 1.0, 2.0), 16)
    anchors = gen((38, 63))  # a 600 x 1000 image at stride 16
    assert anchors.shape == (38 * 63 * 9, 4)  # about 20000 (FRCNN §3.3: "roughly 20000 anchors")
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.all(((centres - 8) % 16).abs() < 1e-3)  # cell centres (x + 0.5) * 16
    # order (y, x, a): anchor index 9 * (63 * y + x) + a is centred on cell (y, x)
    y, x = 5, 7
    torch.testing.assert_close(centres[9 * (63 * y + x) + 4], torch.tensor([x * 16 + 8.0, y * 16 + 8.0]))


# ---------------------------------------------------------------- RPN targets
def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_best_anchor_is_positive_even_below_07():
    anchors = _boxes([0, 0, 10, 10], [20, 20, 40, 40], [100, 100, 110, 110])
    gt = _boxes([0, 0, 16, 16])[None]  # IoU with anchor 0 = 100 / 256 = 0.39 < 0.7
    labels, matched = label_anchors(anchors, gt, torch.ones(1, 1, dtype=torch.bool),
                                    torch.ones(1, 3, dtype=torch.bool), 0.7, 0.3)
    assert labels.tolist() == [[1, 0, 0]]
    assert matched[0, 0] == 0


def test_ignored_band_and_unusable_anchors():
    anchors = _boxes([0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 11])
    gt = _boxes([0, 0, 10, 11])[None]
    usable = torch.tensor([[True, True, False]])  # the perfect anchor is unusable (e.g. crosses the border)
    labels, _ = label_anchors(anchors, gt, torch.ones(1, 1, dtype=torch.bool), usable, 0.7, 0.3)
    # anchor 0: IoU 100/110 = 0.91 -> positive; anchor 1: IoU 110/200 = 0.55 -> ignored; anchor 2: unusable
    assert labels.tolist() == [[1, -1, -1]]


def test_image_without_objects_has_only_negatives():
    anchors = _boxes([0, 0, 10, 10], [5, 5, 20, 20])
    labels, _ = label_anchors(anchors, _boxes([0, 0, 1, 1])[None], torch.zeros(1, 1, dtype=torch.bool),
                              torch.ones(1, 2, dtype=torch.bool), 0.7, 0.3)
    assert labels.tolist() == [[0, 0]]


def test_sampling_respects_budget_and_fraction():
    torch.manual_seed(0)
    labels = torch.tensor([[1] * 200 + [0] * 1000 + [-1] * 100, [1] * 3 + [0] * 1297])
    pos, neg = sample_balanced(labels, 256, 0.5)
    assert pos.sum(1).tolist() == [128, 3]
    assert neg.sum(1).tolist() == [128, 253]
    assert not (pos & (labels != 1)).any() and not (neg & (labels != 0)).any()


# ---------------------------------------------------------------- proposals
def test_proposals_invariants():
    torch.manual_seed(0)
    anchors = AnchorGenerator((32.0, 64.0), (0.5, 1.0, 2.0), 16)((10, 12))
    objectness, deltas = torch.randn(2, anchors.shape[0]), torch.randn(2, anchors.shape[0], 4) * 0.3
    sizes = [(160, 192), (150, 100)]
    props = generate_proposals(anchors, objectness, deltas, sizes, 400, 50, 0.7, 2.0)
    assert props.boxes.shape == (2, 50, 4)
    for i, (h, w) in enumerate(sizes):
        boxes, scores = props.boxes[i][props.valid[i]], props.scores[i][props.valid[i]]
        assert boxes.shape[0] > 0
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (scores[:-1] >= scores[1:]).all()  # sorted by score
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        assert iou.max() <= 0.7  # pairwise IoU <= the NMS threshold


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


# ---------------------------------------------------------------- host round-trips
def _batch():
    torch.manual_seed(0)
    images = [torch.rand(3, 192, 256), torch.rand(3, 256, 200)]
    targets = [dict(boxes=torch.tensor([[10.0, 20, 120, 150], [60, 40, 100, 90]]), labels=torch.tensor([1, 2])),
               dict(boxes=torch.tensor([[30.0, 30, 90, 200]]), labels=torch.tensor([2]))]
    return images, targets


@pytest.mark.parametrize("roi_pool", ["pool", "align"])
def test_no_host_round_trips(roi_pool):
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

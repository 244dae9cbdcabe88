"""frcnn_edu.proposals: the proposal layer's invariants (inside the image, sorted, NMS-separated, fixed size)."""
import importlib

import pytest
import torch

from frcnn_edu.anchors import AnchorGenerator
from frcnn_edu.ops import box_iou
from frcnn_edu.proposals import generate_proposals


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


@pytest.mark.parametrize("block", ["cpu", "gpu"])
def test_a_trained_rpn_keeps_exactly_what_torchvision_nms_keeps(block, monkeypatch):
    """On a trained RPN's proposals (the course model, the built-in test photos and the VOC fixture's when present,
    at the paper's 600 x 1000 scale and top-N) the sync-free proposal layer keeps exactly torchvision.ops.nms's first
    K survivors, with a CPU's NMS blocks and a GPU's. (Deeper chains, as the demo model's, which an earlier
    fixed-step design cut short, are test_ops.py's deep-chain cases.)"""
    import dataclasses

    import torchvision

    import frcnn_edu.proposals as proposals_module
    from conftest import FIXTURE
    from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
    from frcnn_edu.course import course_model
    from frcnn_edu.voc import VOCDataset, load_image

    nms_module = importlib.import_module("frcnn_edu.ops.nms")
    if block == "gpu":
        monkeypatch.setattr(nms_module, "_BLOCK_CPU", nms_module._BLOCK)
    model, args = course_model()
    model.config = dataclasses.replace(model.config, min_size=600, max_size=1000, rpn_pre_nms_top_n_test=6000,
                                       rpn_post_nms_top_n_test=300)
    test = VOCDataset(make_builtin_dataset(args.root), year="builtin", image_set="test", classes=BUILTIN_CLASSES)
    images = [test[i][0] for i in range(3)] + [load_image(p) for p in sorted(FIXTURE.glob("*/JPEGImages/*.jpg"))]
    calls = []
    original = proposals_module.first_kept

    def recorded(boxes, valid, iou_threshold, k):
        calls.append((boxes, valid, iou_threshold, k, original(boxes, valid, iou_threshold, k)))
        return calls[-1][-1]

    proposals_module.first_kept = recorded
    try:
        with torch.no_grad():
            for image in images:
                model([image])
    finally:
        proposals_module.first_kept = original
    for boxes, valid, iou_threshold, k, (indices, found) in calls:
        where = torch.nonzero(valid[0]).flatten()
        ref = where[torchvision.ops.nms(boxes[0][where], -where.float(), iou_threshold)][:k]  # sorted: rank = score
        assert int(found.sum()) == len(ref) and torch.equal(indices[0][: len(ref)], ref)

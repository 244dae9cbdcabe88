"""frcnn_edu.proposals: the proposal layer's invariants (inside the image, sorted, NMS-separated, fixed size)."""
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

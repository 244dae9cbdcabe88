"""frcnn_edu.head: the RoI training targets (Fast §2.3) on a hand-made case, and their invariants."""
import torch

from frcnn_edu.box_coder import decode_boxes
from frcnn_edu.head import roi_targets
from frcnn_edu.ops import box_iou

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _targets(batch_size=8, fraction=0.25):
    torch.manual_seed(0)
    gt_boxes = torch.tensor([[[10.0, 10.0, 50.0, 60.0], [0.0, 0.0, 1.0, 1.0]]])  # [1, G=2, 4], row 1 padding
    gt_labels, gt_valid = torch.tensor([[2, 0]]), torch.tensor([[True, False]])
    proposals = torch.tensor([[[12.0, 10.0, 50.0, 60.0],    # IoU 0.95: foreground
                               [10.0, 10.0, 30.0, 60.0],    # IoU 0.5: foreground
                               [60.0, 60.0, 90.0, 90.0],    # IoU 0: background (lower bound 0)
                               [30.0, 10.0, 70.0, 60.0],    # IoU 1/3: background
                               [0.0, 0.0, 5.0, 5.0]]])      # invalid: never sampled
    valid = torch.tensor([[True, True, True, True, False]])
    return roi_targets(proposals, valid, gt_boxes, gt_labels, gt_valid, 0.5, 0.5, 0.0, batch_size, fraction,
                       WEIGHTS), gt_boxes


def test_ground_truth_joins_the_rois_and_foreground_comes_first():
    targets, gt_boxes = _targets(batch_size=8, fraction=0.5)
    used = targets.used[0]
    # 3 foreground (two proposals and the ground truth itself, Fast §2.3), 2 background; min(8, K + G = 7) slots
    assert used.tolist() == [True] * 5 + [False] * 2
    assert sorted(targets.labels[0, :3].tolist()) == [2, 2, 2] and targets.labels[0, 3:5].tolist() == [0, 0]
    assert any(torch.equal(roi, gt_boxes[0, 0]) for roi in targets.rois[0, :3])


def test_foreground_fraction_bounds_the_sample():
    targets, _ = _targets(batch_size=4, fraction=0.25)
    labels = targets.labels[0][targets.used[0]]
    assert (labels > 0).sum() == 1 and (labels == 0).sum() == 2  # int(4 * 0.25) = 1 foreground; 2 background exist


def test_box_targets_decode_to_the_matched_ground_truth():
    targets, gt_boxes = _targets()
    foreground = targets.used[0] & (targets.labels[0] > 0)
    decoded = decode_boxes(targets.box_targets[0][foreground], targets.rois[0][foreground], WEIGHTS)
    torch.testing.assert_close(decoded, gt_boxes[0, :1].expand_as(decoded))
    assert (box_iou(targets.rois[0][foreground], gt_boxes[0, :1]) >= 0.5).all()

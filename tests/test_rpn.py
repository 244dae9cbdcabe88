"""frcnn_edu.rpn: anchor labels on hand-made cases (FRCNN §3.1.2), and the anchor sample's budget."""
import torch

from frcnn_edu.rpn import label_anchors, sample_anchors


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
    pos, neg = sample_anchors(labels, 256, 0.5)
    assert pos.sum(1).tolist() == [128, 3]
    assert neg.sum(1).tolist() == [128, 253]
    assert not (pos & (labels != 1)).any() and not (neg & (labels != 0)).any()

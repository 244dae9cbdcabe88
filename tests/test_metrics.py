"""frcnn_edu.metrics: hand-computed AP values, and parity with an independent devkit-style reference."""
import numpy as np
import pytest
import torch
from conftest import det, gt

from frcnn_edu.metrics import precision_recall, voc_ap, voc_map


A, B, FAR = [0, 0, 10, 10], [20, 20, 40, 30], [100, 100, 120, 120]


def approx(value):
    # The 11-point AP adds p / 11 eleven times, as the devkit does: 11 * (1 / 11) is 1.0000000000000002.
    return pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("use_07", [True, False])
def test_perfect_detections_give_ap_1(use_07):
    gts = [gt([A, B], [1, 2]), gt([B], [1])]
    dets = [det([B, A], [2, 1], [0.9, 0.8]), det([B], [1], [0.7])]
    result = voc_map(dets, gts, use_07_metric=use_07)
    assert result["ap"] == {1: approx(1.0), 2: approx(1.0)} and result["map"] == approx(1.0)


def test_fp_ranked_above_tp():
    # One gt, an FP (score 0.9) then a TP (0.8): recall [0, 1], precision [0, 1/2].
    # 11-point: every t in 0..1 has recall 1 >= t, best precision 1/2 -> AP 1/2. Area: 1 * 1/2.
    gts, dets = [gt([A], [1])], [det([FAR, A], [1, 1], [0.9, 0.8])]
    recall, precision = precision_recall(dets, gts, label=1)
    np.testing.assert_array_equal(recall, [0.0, 1.0])
    np.testing.assert_array_equal(precision, [0.0, 0.5])
    assert voc_map(dets, gts)["map"] == pytest.approx(0.5, abs=1e-15)
    assert voc_map(dets, gts, use_07_metric=False)["map"] == pytest.approx(0.5, abs=1e-15)


def test_tp_fp_tp():
    # Two gts (one per image); TP 0.9, FP 0.8, TP 0.7: recall [1/2, 1/2, 1], precision [1, 1/2, 2/3].
    # 11-point: t = 0 .. 0.5 (6 points) best 1; t = 0.6 .. 1 (5 points) only recall 1, precision 2/3.
    # AP = (6 + 5 * 2/3) / 11 = 28/33. Area: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    gts = [gt([A], [1]), gt([B], [1])]
    dets = [det([A, FAR], [1, 1], [0.9, 0.8]), det([B], [1], [0.7])]
    assert voc_map(dets, gts)["map"] == approx(28 / 33)
    assert voc_map(dets, gts, use_07_metric=False)["map"] == approx(5 / 6)


def test_duplicate_detection_is_fp():
    # As test_tp_fp_tp, with the FP a second detection of the gt already taken: 28/33 again.
    gts = [gt([A], [1]), gt([B], [1])]
    dets = [det([A, A], [1, 1], [0.9, 0.8]), det([B], [1], [0.7])]
    _, precision = precision_recall(dets, gts, label=1)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    assert voc_map(dets, gts)["map"] == approx(28 / 33)


def test_iou_exactly_at_threshold_is_not_a_match():
    # gt [0, 0, 10, 10] is 1..10 x 1..10 inclusive (100 px); [0, 0, 10, 5] is 1..10 x 1..5 (50 px), inside it:
    # IoU = 50 / 100 = 0.5 exactly, and a match needs IoU > 0.5. One row more (60 px): IoU 0.6, a match.
    gts = [gt([A], [1])]
    assert voc_map([det([[0, 0, 10, 5]], [1], [0.9])], gts)["map"] == 0.0
    assert voc_map([det([[0, 0, 10, 5]], [1], [0.9])], gts, iou_threshold=0.49)["map"] == approx(1.0)
    assert voc_map([det([[0, 0, 10, 6]], [1], [0.9])], gts)["map"] == approx(1.0)


def test_iou_uses_the_devkit_inclusive_pixels():
    # Continuous [0, 0, 3, 1] vs [1, 0, 4, 1]: overlap 2 px of 4 -> IoU 1/2, as inclusive 1..3 vs 2..4.
    # A devkit that forgot our -1 (reading 0..3 vs 1..4) would find 3/5 > 0.5 and call it a match.
    gts = [gt([[0, 0, 3, 1]], [1])]
    assert voc_map([det([[1, 0, 4, 1]], [1], [0.9])], gts)["map"] == 0.0


def test_detection_on_difficult_gt_is_ignored():
    # gt A is difficult; the top detection hits it and is ignored (TP 0, FP 0), the next one finds B.
    # recall [0, 1], precision [0/eps = 0, 1] -> AP 1; counted as an FP it would be 1/2.
    gts = [gt([A, B], [1, 1], [True, False])]
    dets = [det([A, B, A], [1, 1, 1], [0.9, 0.8, 0.7])]  # the third hits the difficult gt again: ignored too
    recall, precision = precision_recall(dets, gts, label=1)
    np.testing.assert_array_equal(recall, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(precision, [0.0, 1.0, 1.0])
    assert voc_map(dets, gts)["map"] == approx(1.0)
    assert voc_map(dets, gts, use_07_metric=False)["map"] == approx(1.0)


def test_classes_without_gt_are_dropped_and_classes_without_detections_score_0():
    gts = [gt([A, B], [1, 2])]
    dets = [det([A, FAR], [1, 3], [0.9, 0.8])]  # class 3 has no gt: left out; class 2 has no detection: 0
    result = voc_map(dets, gts)
    assert result["ap"] == {1: approx(1.0), 2: 0.0} and result["map"] == approx(0.5)


def test_class_with_only_difficult_gt_scores_0():
    gts = [gt([A, B], [1, 2], [False, True])]
    dets = [det([A, B], [1, 2], [0.9, 0.8])]
    assert voc_map(dets, gts)["ap"] == {1: approx(1.0), 2: 0.0}


def test_quirk_recall_exactly_0_3_misses_the_0_3_point():
    # 3 TPs of 10 gts: recall 0.3, precision 1. np.arange(0, 1.1, 0.1)[3] = 0.30000000000000004 > 0.3, so only
    # t = 0, 0.1, 0.2 count: AP = 3/11 (py-faster-rcnn's voc_ap gives the same; exact thresholds would give 4/11).
    assert voc_ap(np.array([0.1, 0.2, 0.3]), np.ones(3), use_07_metric=True) == pytest.approx(3 / 11, abs=1e-15)
    assert voc_ap(np.array([0.1, 0.2, 0.3]), np.ones(3), use_07_metric=False) == pytest.approx(0.3, abs=1e-15)


def test_ties_keep_image_then_detection_order():
    # Equal scores: image 0's FP ranks before image 1's TP -> precision [0, 1/2], AP 1/2. Reversed, AP 1.
    gts = [gt(np.zeros((0, 4)), []), gt([A], [1])]
    dets = [det([A], [1], [0.5]), det([A], [1], [0.5])]
    assert voc_map(dets, gts)["map"] == approx(0.5)
    assert voc_map(dets[::-1], gts[::-1])["map"] == approx(1.0)


def test_inputs_checked():
    with pytest.raises(ValueError, match="detections has 1 images but ground_truths has 2"):
        voc_map([det([A], [1], [0.9])], [gt([A], [1]), gt([A], [1])])
    with pytest.raises(ValueError, match=r"detections\[0\] has no 'scores'"):
        voc_map([dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0))], [gt([A], [1])])
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['labels'\] has 0, expected >= 1"):
        voc_map([det([A], [1], [0.9])], [gt([A], [0])])
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['boxes'\] must have shape \[N, 4\], got \(1, 5\)"):
        voc_map([det([A], [1], [0.9])], [dict(boxes=torch.zeros(1, 5), labels=torch.ones(1))])
    with pytest.raises(ValueError, match="no boxes at all"):
        voc_map([det([A], [1], [0.9])], [gt(np.zeros((0, 4)), [])])


# ---- Parity with an independent reference, written from the devkit's description (VOCevaldet.m, VOCap.m) ----

def reference_class_ap(dets, gts, cls, ovthresh, use_07_metric):
    """One class, the way py-faster-rcnn's voc_eval lays it out: per-image records, a ranked list, a loop."""
    records, npos = {}, 0
    for img, g in enumerate(gts):
        keep = g["labels"] == cls
        bbox = g["boxes"][keep].copy()
        bbox[:, 0] += 1  # back to the XML's 1-based inclusive coordinates
        bbox[:, 1] += 1
        difficult = g["difficult"][keep]
        records[img] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(bbox)}
        npos += int(np.sum(~difficult))
    image_ids, confidence, BB = [], [], []
    for img, d in enumerate(dets):
        for k in range(len(d["labels"])):
            if d["labels"][k] == cls:
                image_ids.append(img)
                confidence.append(d["scores"][k])
                BB.append([d["boxes"][k][0] + 1, d["boxes"][k][1] + 1, d["boxes"][k][2], d["boxes"][k][3]])
    order = sorted(range(len(confidence)), key=lambda k: -confidence[k])  # Python's sort is stable
    nd = len(order)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for rank, k in enumerate(order):
        R, bb = records[image_ids[k]], BB[k]
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(R["bbox"]):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1.0
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1.0
            if iw > 0 and ih > 0:  # VOCevaldet skips gts that do not touch
                ua = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[rank] = 1.0
                    R["det"][jmax] = True
                else:
                    fp[rank] = 1.0
        else:
            fp[rank] = 1.0
    if npos == 0:
        return 0.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def random_scene(seed, num_images=30, num_classes=3):
    """Integer gt boxes with ~15% difficult; detections near them (some exact, duplicate, wrong class) plus junk."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.integers(0, 200, size=(g, 2))
        wh = rng.integers(1, 80, size=(g, 2))
        gt_boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
        gt_labels = rng.integers(1, num_classes + 1, size=g)
        gts.append(dict(boxes=gt_boxes, labels=gt_labels, difficult=rng.random(g) < 0.15))
        near = gt_boxes[rng.integers(0, g, size=2 * g)] if g else np.zeros((0, 4))
        near = near + rng.integers(-6, 7, size=near.shape) * (rng.random((len(near), 1)) < 0.7)
        near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
        junk_xy = rng.uniform(0, 200, size=(int(rng.integers(0, 4)), 2))
        junk = np.concatenate([junk_xy, junk_xy + rng.uniform(2, 60, size=junk_xy.shape)], axis=1)
        boxes = np.concatenate([near, junk])
        labels = np.concatenate([gt_labels[rng.integers(0, g, size=2 * g)] if g else np.zeros(0, np.int64),
                                 rng.integers(1, num_classes + 1, size=len(junk))])
        labels = np.where(rng.random(len(labels)) < 0.1, rng.integers(1, num_classes + 1, len(labels)), labels)
        scores = np.round(rng.random(len(boxes)), 1)  # one decimal: many ties
        dets.append(dict(boxes=boxes, labels=labels, scores=scores))
    return dets, gts


@pytest.mark.parametrize("use_07", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_parity_with_reference(seed, use_07):
    dets, gts = random_scene(seed)
    classes = sorted({int(c) for g in gts for c in g["labels"]})
    expected = {c: reference_class_ap(dets, gts, c, 0.5, use_07) for c in classes}
    as_tensors = [{k: torch.as_tensor(v) for k, v in d.items()} for d in dets]  # the model's output type
    result = voc_map(as_tensors, gts, use_07_metric=use_07)
    assert result["ap"].keys() == expected.keys()
    for c in classes:
        assert abs(result["ap"][c] - expected[c]) <= 1e-12, (c, result["ap"][c], expected[c])
    assert abs(result["map"] - np.mean(list(expected.values()))) <= 1e-12
    assert 0.05 < result["map"] < 0.95  # a scene that tests something: neither empty nor perfect

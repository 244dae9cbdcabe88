"""frcnn_edu.coco_eval: perfect and hand-computed COCO APs, agreement with metrics.voc_map where the two rules
coincide, crowd (difficult) regions, zero detections, results entries, and COCODataset's category ids."""
import json

import numpy as np
import pytest
import torch
from conftest import det, gt
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn_edu.coco import COCODataset
from frcnn_edu.coco_eval import coco_map, coco_results
from frcnn_edu.metrics import voc_map


A, B, FAR = [0, 0, 100, 100], [200, 200, 300, 260], [500, 500, 520, 520]


def approx(value):
    # pycocotools averages 101 (and 10) floats: a perfect AP comes out as 0.9999999999999998.
    return pytest.approx(value, abs=1e-12)


def test_perfect_detections_give_1(capsys):
    gts = [gt([A, B], [1, 2]), gt([B], [1])]
    dets = [det([B, A], [2, 1], [0.9, 0.8]), det([B], [1], [0.7])]
    assert coco_map(dets, gts, ["cat", "dog"]) == dict(map_coco=approx(1.0), ap50=approx(1.0), ap75=approx(1.0))
    assert capsys.readouterr().out == ""  # pycocotools' progress lines and summary are kept off stdout


def test_known_numbers_tp_then_fp():
    # One class, two gts (A, B), a TP (0.9) then an FP (0.8): recall [1/2, 1/2], precision [1, 1/2].
    # COCO averages the precision envelope at 101 recall points 0, 0.01, ..., 1: the 51 points up to 0.50 see
    # precision 1, the 50 above recall 1/2 see 0, so AP = 51/101 (VOC2010's area: 1/2).
    gts = [gt([A, B], [1, 1])]
    exact = coco_map([det([A, FAR], [1, 1], [0.9, 0.8])], gts, ["cat"])
    assert exact == dict(map_coco=approx(51 / 101), ap50=approx(51 / 101), ap75=approx(51 / 101))
    # The TP cut to [0, 0, 100, 72] has IoU 0.72 with A: a match at the 5 thresholds 0.50 .. 0.70 of the 10, not at
    # 0.75 .. 0.95. So AP50 = 51/101, AP75 = 0, mAP@[.5:.95] = 5/10 * 51/101.
    loose = coco_map([det([[0, 0, 100, 72], FAR], [1, 1], [0.9, 0.8])], gts, ["cat"])
    assert loose == dict(map_coco=approx(0.5 * 51 / 101), ap50=approx(51 / 101), ap75=0.0)


def test_match_needs_iou_at_least_the_threshold():
    # [0, 0, 100, 50] inside A: IoU 1/2 exactly. COCO matches at IoU >= 0.5; VOC needs > 0.5.
    gts, dets = [gt([A], [1])], [det([[0, 0, 100, 50]], [1], [0.9])]
    assert coco_map(dets, gts, ["cat"])["ap50"] == approx(1.0)
    assert voc_map(dets, gts)["map"] == 0.0


def test_difficult_gt_is_a_crowd_region_and_ignored():
    # A is difficult (iscrowd = 1): the top detection on it is ignored, neither TP nor FP, and so is a second one
    # (a crowd region absorbs any number); the detection on B is a TP: AP 1. Counted as an FP, A's would give 1/2.
    gts = [gt([A, B], [1, 1], [True, False])]
    dets = [det([A, B, A], [1, 1, 1], [0.9, 0.8, 0.7])]
    assert coco_map(dets, gts, ["cat"]) == dict(map_coco=approx(1.0), ap50=approx(1.0), ap75=approx(1.0))


def test_zero_detections_give_0():
    gts = [gt([A, B], [1, 2]), gt([B], [1])]
    nothing = det(np.zeros((0, 4)), [], [])
    assert coco_map([nothing, nothing], gts, ["cat", "dog"]) == dict(map_coco=0.0, ap50=0.0, ap75=0.0)


def separated_scene(seed, num_images=20, num_classes=3):
    """gts in separate 150 px cells of a grid; detections: 80% of gts found (shifted by up to 1 px: IoU >= 59/61),
    20% of those found twice, 0-2 junk boxes in empty cells (IoU 0), all with random scores."""
    rng = np.random.default_rng(seed)
    cells = np.array([(x, y) for x in range(0, 600, 150) for y in range(0, 450, 150)], dtype=np.float64)  # 12
    gts, dets = [], []
    for _ in range(num_images):
        order, g = rng.permutation(len(cells)), int(rng.integers(1, 5))
        gt_boxes = np.concatenate([cells[order[:g]], cells[order[:g]] + rng.integers(60, 101, size=(g, 2))], axis=1)
        gt_labels = rng.integers(1, num_classes + 1, size=g)
        found = rng.random(g) < 0.8
        twice = found & (rng.random(g) < 0.2)
        hits = np.concatenate([gt_boxes[found], gt_boxes[twice]])
        hits[:, [0, 2]] += rng.integers(-1, 2, size=(len(hits), 1))  # a 1 px shift of a w >= 60 box: IoU >= 59/61
        corners = cells[order[g : g + int(rng.integers(0, 3))]]
        junk = np.concatenate([corners, corners + rng.integers(20, 101, size=corners.shape)], axis=1)
        labels = np.concatenate([gt_labels[found], gt_labels[twice], rng.integers(1, num_classes + 1, len(junk))])
        gts.append(gt(gt_boxes, gt_labels))
        dets.append(det(np.concatenate([hits, junk]), labels, rng.random(len(labels))))
    return dets, gts


@pytest.mark.parametrize("seed", range(3))
def test_ap50_agrees_with_voc2010_ap_where_the_rules_coincide(seed):
    """COCO's AP50 and VOC2010+'s AP (metrics.voc_map, use_07_metric=False) agree within 0.01 on this scene.

    Every detection has IoU >= 0.95 with one gt of its class or < 0.3 with all (gts do not overlap), so COCO's
    >= 0.5 and VOC's > 0.5 match the same pairs, and a detection's best gt is also the best free one; nothing is
    difficult, and no image has near 100 detections. What is left differs only in the AP formula: both take the
    precision envelope, but COCO averages it at 101 recall points 0, 0.01, ..., 1 while VOC integrates its exact
    area, and on a step curve the two differ by at most about 1/100. In general they differ more: COCO keeps
    only the top 100 detections per image, and treats crowd regions (our difficult) as areas where detections
    are ignored by intersection over the detection's area, where VOC ignores a detection only when its best-IoU
    gt is difficult. The IoUs >= 0.95 also make the ten thresholds agree: mAP@[.5:.95] = AP50 = AP75.
    """
    dets, gts = separated_scene(seed)
    assert {int(c) for g in gts for c in g["labels"]} == {1, 2, 3}  # every class present
    coco = coco_map(dets, gts, ["a", "b", "c"])
    voc = voc_map(dets, gts, use_07_metric=False)["map"]
    assert abs(coco["ap50"] - voc) <= 0.01, (coco["ap50"], voc)
    assert coco["map_coco"] == approx(coco["ap50"]) and coco["ap75"] == approx(coco["ap50"])
    assert 0.3 < voc < 0.95  # a scene that tests something: neither empty nor perfect


def test_results_entries():
    dets = [det([[10, 5, 30.5, 20]], [2], [0.75]), det(np.zeros((0, 4)), [], []), det([A, B], [1, 3], [0.5, 0.25])]
    results = coco_results(dets, ["000005", "7", "12"])
    assert results == [dict(image_id=5, category_id=2, bbox=[10, 5, 20.5, 15], score=0.75),  # [x, y, w = x2 - x1, h]
                       dict(image_id=12, category_id=1, bbox=[0, 0, 100, 100], score=0.5),
                       dict(image_id=12, category_id=3, bbox=[200, 200, 100, 60], score=0.25)]
    mapped = coco_results(dets, ["a", "b", "c"], numeric_ids=[4, 8, 9], category_ids=[2, 17, 90])
    assert [(r["image_id"], r["category_id"]) for r in mapped] == [(4, 17), (9, 2), (9, 90)]


def test_inputs_checked():
    with pytest.raises(ValueError, match=r"image_ids\[0\] = '2007_000027' is not a number: pass numeric_ids"):
        coco_results([det([A], [1], [0.9])], ["2007_000027"])
    with pytest.raises(ValueError, match="detections has 1 images but image_ids has 2"):
        coco_results([det([A], [1], [0.9])], ["1", "2"])
    with pytest.raises(ValueError, match=r"detections\[0\]\['labels'\] has 4, expected 1..3"):
        coco_results([det([A], [4], [0.9])], ["1"], category_ids=[2, 17, 90])
    with pytest.raises(ValueError, match="detections has 1 images but ground_truths has 2"):
        coco_map([det([A], [1], [0.9])], [gt([A], [1]), gt([A], [1])], ["cat"])
    with pytest.raises(ValueError, match=r"detections\[0\]\['labels'\] has 2, expected 1..1"):
        coco_map([det([A], [2], [0.9])], [gt([A], [1])], ["cat"])
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['labels'\] has 2, expected 1..1 \(len\(classes\)\)"):
        coco_map([det([A], [1], [0.9])], [gt([A], [2])], ["cat"])
    with pytest.raises(ValueError, match=r"detections\[0\]\['boxes'\] must have shape \[N, 4\], got \(1, 5\)"):
        coco_map([dict(boxes=torch.zeros(1, 5), labels=torch.ones(1), scores=torch.ones(1))], [gt([A], [1])], ["cat"])
    with pytest.raises(ValueError, match=r"detections\[0\]: lengths differ"):
        coco_map([det([A, B], [1], [0.9])], [gt([A], [1])], ["cat"])
    with pytest.raises(ValueError, match="no boxes at all"):
        coco_map([det([A], [1], [0.9])], [gt(np.zeros((0, 4)), [])], ["cat"])


def test_results_score_against_the_original_coco_file(tmp_path):
    # COCODataset's labels 1..C are not the file's category ids (here 5 and 90): category_ids maps them back, so
    # perfect detections written with coco_results score 1 with pycocotools on the original file.
    Image.new("RGB", (320, 300)).save(tmp_path / "a.jpg")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dict(
        images=[dict(id=42, file_name="a.jpg", height=300, width=320)],
        annotations=[dict(id=1, image_id=42, category_id=90, bbox=[0, 0, 100, 100], area=10000, iscrowd=0),
                     dict(id=2, image_id=42, category_id=5, bbox=[200, 200, 100, 60], area=6000, iscrowd=0)],
        categories=[dict(id=90, name="zebra"), dict(id=5, name="cat")])))
    data = COCODataset(path, tmp_path)
    dets = [dict(a, scores=torch.ones(len(a["labels"]))) for a in data.annotations]
    results = coco_results(dets, data.ids, category_ids=data.category_ids)
    assert sorted(r["category_id"] for r in results) == [5, 90]
    truth = COCO(str(path))
    evaluation = COCOeval(truth, truth.loadRes(results), iouType="bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == approx(1.0)

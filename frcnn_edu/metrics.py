"""PASCAL VOC detection AP and mAP, computed as the official devkit computes them.

Stage: evaluation. Faster R-CNN (arXiv:1506.01497v3 §4.1, Tables 2-4) reports mAP on VOC 2007 test with the
VOC2007 11-point AP at IoU > 0.5. Notebook: notebooks/06_fast_rcnn_head.ipynb (notebook 6) calls voc_map and
plots precision_recall. References: the VOC devkit's VOCevaldet.m (matching, VOC2007 AP) and VOCap.m (VOC2010+
AP); py-faster-rcnn `lib/datasets/voc_eval.py` (voc_eval, voc_ap), its Python port. Not in the forward pass:
it reads tensors on the host (`.cpu().numpy()`) and loops in Python, once per detection.

Inputs, one entry per image, in the same order:
    detections[i]:    dict(boxes=[D, 4] xyxy 0-based continuous orig px, labels=[D] int64 >= 1, scores=[D]),
                      as the model returns them in eval mode (tensors on any device, or numpy arrays).
    ground_truths[i]: dict(boxes=[G, 4] same frame, labels=[G] int64 >= 1, difficult=[G] bool, optional:
                      none difficult), e.g. VOCDataset(..., keep_difficult=True).annotations[i].

Per class c, for each class with at least one ground-truth box (difficult or not):
1. Rank the detections of class c over all images by score, descending. Ties keep image order, then
   detection order: a stable sort, as MATLAB's sort in the devkit (py-faster-rcnn's np.argsort is not stable).
2. Walk the ranking. Match each detection to the gt of class c in its image with the highest IoU (the first
   on ties). IoU is taken in the devkit's inclusive pixels: our box maps back to xmin = x1 + 1, xmax = x2,
   widths are xmax - xmin + 1 and the overlap is min(xmax) - max(xmin) + 1, clamped at 0. On paper that is
   our continuous IoU; computing it the devkit's way makes the floats match too. Then:
   - IoU <= iou_threshold (a match needs strictly more), or no gt of c in the image: false positive (FP);
   - the gt is difficult: ignored, neither TP nor FP (it stays in the ranking, adding 0 to both);
   - the gt was taken by a higher-ranked detection: FP (a duplicate);
   - otherwise: true positive (TP), and the gt is taken.
3. recall = cumsum(TP) / npos, npos = the number of non-difficult gt of c;
   precision = cumsum(TP) / max(cumsum(TP) + cumsum(FP), eps).
4. AP. use_07_metric=True (VOC2007, the paper's): the mean over t = 0, 0.1, ..., 1 of the highest precision
   at recall >= t (0 if recall never reaches t). False (VOC2010 and later): the area under the precision
   envelope (precision made non-increasing from the right), summed where recall changes.
mAP is the mean of the APs. A class with gt but no detections has AP 0. A class whose gt are all difficult
(npos = 0) gets AP 0: the devkit divides by zero there (11-point: 0; VOC2010: NaN).

Quirks kept from py-faster-rcnn's voc_eval, for parity with its numbers:
- The 11 thresholds are np.arange(0.0, 1.1, 0.1), and three of its floats, 0.30000000000000004,
  0.6000000000000001 and 0.7000000000000001, lie just above 0.3, 0.6 and 0.7: a recall of exactly 3/10 does
  not count at t = 0.3. (MATLAB's 0:0.1:1 has the same 0.3, but 0.6 and 0.7 exactly.)
- A detection ignored on a difficult gt at the top of the ranking has precision 0/eps = 0 (MATLAB: 0/0 = NaN,
  which its max skips; the AP is the same unless every detection is ignored).
"""
from typing import Sequence

import numpy as np
import torch


def _numpy(x, dtype, shape: tuple, where: str) -> np.ndarray:
    """x (tensor or array-like) as a host numpy array; shape uses -1 for any size (an empty x may be [0])."""
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.size == 0:
        return np.zeros([0 if n == -1 else n for n in shape], dtype)
    if array.ndim != len(shape) or any(n not in (-1, m) for n, m in zip(shape, array.shape)):
        raise ValueError(f"{where} must have shape [{', '.join('N' if n == -1 else str(n) for n in shape)}], "
                         f"got {tuple(array.shape)}")
    return array.astype(dtype)


def _prepare(items: Sequence[dict], name: str, with_scores: bool) -> list:
    """Checks one input list; each entry as numpy: boxes float64, labels int64, and scores or difficult."""
    keys = ("boxes", "labels", "scores") if with_scores else ("boxes", "labels")
    out = []
    for i, item in enumerate(items):
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"{name}[{i}] has no {missing[0]!r}; expected keys {keys}")
        entry = dict(boxes=_numpy(item["boxes"], np.float64, (-1, 4), f"{name}[{i}]['boxes']"),
                     labels=_numpy(item["labels"], np.int64, (-1,), f"{name}[{i}]['labels']"))
        if entry["labels"].size and entry["labels"].min() < 1:
            raise ValueError(f"{name}[{i}]['labels'] has {entry['labels'].min()}, expected >= 1 (0 is background)")
        if with_scores:
            entry["scores"] = _numpy(item["scores"], np.float64, (-1,), f"{name}[{i}]['scores']")
        else:
            difficult = item.get("difficult", np.zeros(len(entry["labels"]), bool))
            entry["difficult"] = _numpy(difficult, bool, (-1,), f"{name}[{i}]['difficult']")
        lengths = {k: len(v) for k, v in entry.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{name}[{i}]: lengths differ, {lengths}; expected one row per box")
        out.append(entry)
    return out


def _devkit_iou(box: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of box [4] with gt_boxes [G, 4], both 1-based inclusive (xmin, ymin, xmax, ymax): VOCevaldet's."""
    iw = np.maximum(np.minimum(gt_boxes[:, 2], box[2]) - np.maximum(gt_boxes[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt_boxes[:, 3], box[3]) - np.maximum(gt_boxes[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    union = ((box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
             + (gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0) - inter)
    return inter / union  # [G]


def _ranked_detections(dets: list, label: int) -> tuple:
    """Detections of one class over all images, by score descending, stable: (image index [D], boxes [D, 4])."""
    image_index = np.concatenate([np.full(int((d["labels"] == label).sum()), i) for i, d in enumerate(dets)])
    boxes = np.concatenate([d["boxes"][d["labels"] == label] for d in dets])  # [D, 4]
    scores = np.concatenate([d["scores"][d["labels"] == label] for d in dets])
    order = np.argsort(-scores, kind="stable")
    return image_index[order].astype(np.int64), boxes[order]


def _match(image_index: np.ndarray, boxes: np.ndarray, gts: list, label: int, iou_threshold: float) -> tuple:
    """TP and FP flags [D] of ranked detections (steps 2 of the module docstring), and npos."""
    to_inclusive = np.array([1.0, 1.0, 0.0, 0.0])  # 0-based continuous -> VOC 1-based inclusive
    gt_boxes = [g["boxes"][g["labels"] == label] + to_inclusive for g in gts]
    gt_difficult = [g["difficult"][g["labels"] == label] for g in gts]
    taken = [np.zeros(len(d), bool) for d in gt_difficult]
    tp, fp = np.zeros(len(boxes)), np.zeros(len(boxes))
    for d, (i, box) in enumerate(zip(image_index, boxes + to_inclusive)):
        overlaps = _devkit_iou(box, gt_boxes[i]) if len(gt_boxes[i]) else np.zeros(0)
        j = int(overlaps.argmax()) if overlaps.size else -1
        if j < 0 or overlaps[j] <= iou_threshold:
            fp[d] = 1.0
        elif gt_difficult[i][j]:
            continue  # neither TP nor FP
        elif taken[i][j]:
            fp[d] = 1.0
        else:
            tp[d], taken[i][j] = 1.0, True
    npos = int(sum((~d).sum() for d in gt_difficult))
    return tp, fp, npos


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from recall and precision [D] over a ranking: VOC2007 11-point, or VOC2010+ envelope area."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # py-faster-rcnn's thresholds, floats included (module docstring)
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: best precision at this recall or beyond
    change = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def _check(detections: Sequence[dict], ground_truths: Sequence[dict]) -> tuple:
    if len(detections) != len(ground_truths):
        raise ValueError(f"detections has {len(detections)} images but ground_truths has {len(ground_truths)}; "
                         "expected one entry per image for both, in the same order")
    return _prepare(detections, "detections", True), _prepare(ground_truths, "ground_truths", False)


def _precision_recall(dets: list, gts: list, label: int, iou_threshold: float) -> tuple:
    tp, fp, npos = _match(*_ranked_detections(dets, label), gts, label, iou_threshold)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / max(npos, 1)  # npos = 0: tp is all 0, so recall 0 and AP 0 (module docstring)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision


def precision_recall(detections: Sequence[dict], ground_truths: Sequence[dict], label: int,
                     iou_threshold: float = 0.5) -> tuple:
    """Recall and precision of one class down its ranking (steps 1-3 of the module docstring).

    Returns:
        (recall [D], precision [D]) float64 numpy arrays, D = the number of detections labelled `label`,
        by score descending. Detections ignored on difficult gt keep their place (TP and FP both 0).
    """
    dets, gts = _check(detections, ground_truths)
    return _precision_recall(dets, gts, label, iou_threshold)


def voc_map(detections: Sequence[dict], ground_truths: Sequence[dict], iou_threshold: float = 0.5,
            use_07_metric: bool = True) -> dict:
    """PASCAL VOC mean average precision, with the devkit's semantics (module docstring).

    Args:
        detections: per image, dict(boxes=[D, 4] xyxy 0-based continuous orig px, labels=[D] int64 >= 1,
            scores=[D]); tensors (any device) or numpy arrays.
        ground_truths: per image, same order, dict(boxes=[G, 4] same frame, labels=[G] int64 >= 1,
            difficult=[G] bool, optional).
        iou_threshold: a detection matches a gt when their IoU is strictly greater (VOC: 0.5).
        use_07_metric: True for VOC2007's 11-point AP (the paper's numbers), False for VOC2010+'s area.

    Returns:
        {"map": float, "ap": {class_id: float}}, over the classes with at least one gt box (sorted ids).
    """
    dets, gts = _check(detections, ground_truths)
    classes = sorted({int(c) for g in gts for c in g["labels"]})
    if not classes:
        raise ValueError("ground_truths has no boxes at all: mAP is undefined")
    ap = {c: voc_ap(*_precision_recall(dets, gts, c, iou_threshold), use_07_metric) for c in classes}
    return {"map": float(np.mean(list(ap.values()))), "ap": ap}

"""COCO-style detection metrics (mAP@[.5:.95], AP50, AP75) of the package's detections, computed by pycocotools.

Stage: evaluation, by the MS COCO rules (Faster R-CNN, arXiv:1506.01497v3 §4.2 reports mAP@.5 and mAP@[.5, .95]
on COCO); metrics.py computes PASCAL VOC's. Notebooks: none yet. pycocotools is the COCO team's own evaluation
code (cocodataset/cocoapi), the one the COCO benchmark and torchvision's detection references score with, so a
number from it compares with theirs directly; faster-coco-eval is a faster reimplementation of it, and
torchmetrics' MeanAveragePrecision wraps one or the other, so both put a layer between us and the reference.

Inputs, one entry per image, in the same order (the formats metrics.py takes):
    detections[i]:    dict(boxes=[D, 4] xyxy orig px, labels=[D] int64 in 1..C, scores=[D]), as the model
                      returns them in eval mode (tensors on any device, or numpy arrays).
    ground_truths[i]: dict(boxes=[G, 4] same frame, labels=[G] int64 in 1..C, difficult=[G] bool, optional),
                      e.g. VOCDataset(...).annotations[i] or COCODataset(...).annotations[i].

How COCO's rules differ from VOC's (metrics.py):
- Ten IoU thresholds, 0.50:0.05:0.95, and a match needs IoU >= t (VOC: > 0.5). mAP@[.5:.95] is the mean over
  classes and thresholds; AP50 and AP75 are single thresholds.
- AP is the mean of the interpolated precision (the envelope, as VOC2010+) at 101 recall points 0:0.01:1;
  VOC2010+ integrates the envelope's exact area instead, VOC2007 averages 11 points.
- A detection is matched to the best gt not yet taken (VOC: to the best gt; if that one is taken, an FP).
- At most 100 detections per image count, the highest scoring (maxDets); VOC counts them all.
- difficult gt are passed as iscrowd = 1. A crowd region is ignored, and so is a detection that is left
  unmatched by the regular gt and overlaps a crowd region by IoU >= t, that IoU being intersection / the
  detection's area; a crowd region absorbs any number of detections. VOC ignores a detection only when its
  best-IoU gt is difficult and the IoU > 0.5.
- Boxes: COCO's bbox [x, y, w, h] is continuous like ours (w = x2 - x1), so nothing adds 1; the +1 in
  metrics.py is the VOC devkit's inclusive pixels. Area ranges (small, medium, large) are not reported here.
"""
import contextlib
import io
import re
from typing import Optional, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .coco import coco_bbox


_DTYPES = dict(boxes=np.float64, labels=np.int64, scores=np.float64, difficult=bool)


def _rows(item: dict, where: str) -> dict:
    """boxes, labels and (if present) scores or difficult of one entry as Python lists, shapes checked."""
    out = {}
    for key, dtype in _DTYPES.items():
        if key not in item:
            if key in ("boxes", "labels"):
                raise ValueError(f"{where} has no {key!r}")
            continue
        value = item[key].detach().cpu().numpy() if isinstance(item[key], torch.Tensor) else np.asarray(item[key])
        shape = (-1, 4) if key == "boxes" else (-1,)
        if value.size and (value.ndim != len(shape) or value.shape[1:] != shape[1:]):
            raise ValueError(f"{where}[{key!r}] must have shape [{'N, 4' if key == 'boxes' else 'N'}], "
                             f"got {tuple(value.shape)}")
        out[key] = value.astype(dtype).reshape(shape).tolist()  # an empty [0] becomes [0, 4] for boxes
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: lengths differ, {lengths}; expected one row per box")
    return out


def _numeric(image_ids: Sequence[str], numeric_ids: Optional[Sequence[int]]) -> list[int]:
    if numeric_ids is not None:
        if len(numeric_ids) != len(image_ids):
            raise ValueError(f"numeric_ids has {len(numeric_ids)} entries, image_ids {len(image_ids)}")
        return [int(n) for n in numeric_ids]
    for i, image_id in enumerate(image_ids):
        if not re.fullmatch(r"[0-9]+", str(image_id)):  # int() would take "2007_000027" as 2007000027
            raise ValueError(f"image_ids[{i}] = {image_id!r} is not a number: pass numeric_ids, COCO's integer "
                             "id of each image")
    return [int(image_id) for image_id in image_ids]


def coco_results(detections: Sequence[dict], image_ids: Sequence[str], numeric_ids: Optional[Sequence[int]] = None,
                 category_ids: Optional[Sequence[int]] = None) -> list[dict]:
    """The package's detections as COCO results entries (the format of a results file, and of COCO.loadRes).

    Args:
        detections: per image, dict(boxes=[D, 4] xyxy orig px, labels=[D] int64 in 1..C, scores=[D]).
        image_ids: one per detections entry, the dataset's ids (dataset.ids).
        numeric_ids: COCO's integer id of each image. By default int(image_id), for ids made of digits only
            (COCODataset's, VOC2007's "000005"); VOC2012's "2007_000027" needs them given.
        category_ids: COCO's category id of each label, in label order (COCODataset.category_ids). By default
            the label itself, as detect.py writes it and voc_to_coco numbers categories.

    Returns:
        [{"image_id": int, "category_id": int, "bbox": [x, y, w, h] orig px, "score": float}], image by image,
        in detection order. Values are not rounded (detect.py rounds, for a readable file).
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"detections has {len(detections)} images but image_ids has {len(image_ids)}")
    results = []
    for i, (item, image_id) in enumerate(zip(detections, _numeric(image_ids, numeric_ids))):
        rows = _rows(item, f"detections[{i}]")
        if "scores" not in rows:
            raise ValueError(f"detections[{i}] has no 'scores'")
        for box, label, score in zip(rows["boxes"], rows["labels"], rows["scores"]):
            if category_ids is not None and not 1 <= label <= len(category_ids):
                raise ValueError(f"detections[{i}]['labels'] has {label}, expected 1..{len(category_ids)}")
            category = label if category_ids is None else category_ids[label - 1]
            results.append(dict(image_id=image_id, category_id=int(category), bbox=coco_bbox(box), score=float(score)))
    return results


def coco_ground_truth(ground_truths: Sequence[dict], classes: Sequence[str]) -> dict:
    """Ground truths as a COCO dict for evaluation: image i is id i + 1, label k is category id k, difficult ->
    iscrowd = 1, area = box w * h. Images carry only their id (box evaluation needs no size or file)."""
    annotations = []
    for i, item in enumerate(ground_truths):
        rows = _rows(item, f"ground_truths[{i}]")
        for j, (box, label) in enumerate(zip(rows["boxes"], rows["labels"])):
            if not 1 <= label <= len(classes):
                raise ValueError(f"ground_truths[{i}]['labels'] has {label}, expected 1..{len(classes)} "
                                 f"(len(classes))")
            bbox = coco_bbox(box)
            crowd = bool(rows["difficult"][j]) if "difficult" in rows else False
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, category_id=label, bbox=bbox,
                                    area=bbox[2] * bbox[3], iscrowd=int(crowd)))
    return dict(images=[dict(id=i + 1) for i in range(len(ground_truths))], annotations=annotations,
                categories=[dict(id=k + 1, name=name) for k, name in enumerate(classes)])


def coco_map(detections: Sequence[dict], ground_truths: Sequence[dict], classes: Sequence[str]) -> dict:
    """COCO's box AP by pycocotools (module docstring), with its printed summary kept off stdout.

    Args:
        detections: per image, dict(boxes=[D, 4] xyxy orig px, labels=[D] int64 in 1..C, scores=[D]).
        ground_truths: per image, same order, dict(boxes=[G, 4] xyxy orig px, labels=[G] int64 in 1..C,
            difficult=[G] bool, optional: none difficult).
        classes: the C class names, in label order.

    Returns:
        {"map_coco": AP@[.5:.95], "ap50": AP@.5, "ap75": AP@.75}, floats over the classes with at least one gt
        box; 0.0 each when there is no detection at all. pycocotools gives -1 when every gt is difficult.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"detections has {len(detections)} images but ground_truths has {len(ground_truths)}; "
                         "expected one entry per image for both, in the same order")
    truth = coco_ground_truth(ground_truths, classes)
    if not truth["annotations"]:
        raise ValueError("ground_truths has no boxes at all: mAP is undefined")
    image_ids = [str(i + 1) for i in range(len(detections))]  # coco_ground_truth's numbering
    results = coco_results(detections, image_ids, category_ids=range(1, len(classes) + 1))  # checks labels 1..C
    if not results:
        return dict(map_coco=0.0, ap50=0.0, ap75=0.0)  # loadRes fails on an empty list
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its 12-line summary
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(map_coco=float(evaluation.stats[0]), ap50=float(evaluation.stats[1]), ap75=float(evaluation.stats[2]))

"""The COCO reader: a COCO-format JSON file and its image folder as (image, target) pairs, as voc.VOCDataset gives them.

Stage: the input of Faster R-CNN (arXiv:1506.01497v3 §4.2: MS COCO), for any data labelled in COCO's format
(https://cocodataset.org/#format-data, "Object Detection"). Notebooks: none yet; the trainer takes this reader or
voc.VOCDataset, which have the same interface, and coco_eval.py scores detections the COCO way.

Takes a JSON file with "images" (id, file_name, height, width), "annotations" (id, image_id, category_id, bbox,
iscrowd) and "categories" (id, name), and the folder the file names are relative to; gives (image, target) pairs:
    image:  [3, H, W] float32 RGB in [0, 1], orig px (voc.load_image: the file as it is on disk).
    target: boxes [G, 4] float32, xyxy, orig px; labels [G] int64 in 1..C; difficult [G] bool;
            image_id str (the JSON's id, e.g. "397133"); orig_size (H, W) ints from the JSON.

Conventions (STYLE.md), and how COCO's map onto them:
- COCO's bbox is [x, y, w, h] in continuous pixels, as our boxes are (x is the left edge, w = x2 - x1), so
  xyxy = (x, y, x + w, y + h) with no +-1 (VOC's XML is the one that needs it, in voc.py). Boxes are clamped
  to the image, as voc.py clamps: COCO has boxes that end a fraction of a pixel past the edge.
- Category ids are any integers (COCO's 80 classes use 1..90, with gaps). Labels are 1..C in increasing id
  order, named by the "categories" entries; `category_ids[k]` is label k + 1's id, to map detections back.
- iscrowd = 1 marks a region of many objects (a crowd of people) with one box. It is kept and flagged
  difficult: evaluation ignores detections that hit it, as VOC's difficult (metrics.py; coco_eval.py turns it
  back into iscrowd).
- voc_to_coco writes a VOCDataset the other way (image ids 1..N, category ids = labels), e.g. to score VOC with
  coco_eval or to check this reader against the VOC one:
    voc = VOCDataset(root, year="2007", image_set="test")
    Path("voc07_test.json").write_text(json.dumps(voc_to_coco(voc)))
    data = COCODataset("voc07_test.json", images=voc.year_dir / "JPEGImages")   # the same boxes and labels
"""
import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .voc import VOCDataset, load_item

COCO_KEYS = ("images", "annotations", "categories")


def coco_bbox(box: Sequence[float]) -> list[float]:
    """One xyxy box (x1, y1, x2, y2) as COCO's [x, y, w, h], same frame; both continuous: w = x2 - x1, no +1."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def read_coco_json(path) -> dict:
    """The parsed JSON file, checked to hold COCO_KEYS; FileNotFoundError or ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} not found")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as err:  # json.JSONDecodeError, or UnicodeDecodeError for a binary file
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with keys {', '.join(COCO_KEYS)}, "
                         f"got a {type(data).__name__}")
    missing = [key for key in COCO_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path} has no {missing[0]!r} key; a COCO file holds {', '.join(COCO_KEYS)}")
    return data


def _get(entry: dict, key: str, where: str):
    if not isinstance(entry, dict) or key not in entry:
        raise ValueError(f"{where} has no {key!r}")
    return entry[key]


def _categories(path: Path, categories: list, classes: Optional[Sequence[str]]) -> tuple:
    """(category ids in label order, their names): all by increasing id, or the `classes` named, in that order."""
    names = {_get(c, "id", f"{path}, categories[{i}]"): _get(c, "name", f"{path}, categories[{i}]")
             for i, c in enumerate(categories)}
    ids = sorted(names)
    if classes is not None:
        by_name = {names[i]: i for i in ids}
        unknown = [name for name in classes if name not in by_name]
        if unknown:
            raise ValueError(f"{path}: no category named {unknown[0]!r}; categories there: "
                             f"{', '.join(names[i] for i in ids)}")
        ids = [by_name[name] for name in classes]
    return tuple(ids), tuple(names[i] for i in ids)


def _box(bbox, where: str, size: tuple) -> tuple:
    """COCO's [x, y, w, h] as xyxy orig px, clamped to the image; ValueError for an empty box."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        raise ValueError(f"{where}: bbox is {bbox!r}, expected [x, y, w, h] numbers")
    x, y, w, h = (float(v) for v in bbox)
    if not (w > 0 and h > 0):  # written so that NaN fails too
        raise ValueError(f"{where}: bbox [x, y, w, h] = {bbox} has a non-positive width or height")
    height, width = size
    box = (max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"{where}: bbox [x, y, w, h] = {bbox} lies outside the {width}x{height} image")
    return box


class COCODataset(torch.utils.data.Dataset):
    """A COCO-format detection set as (image, target) pairs, with voc.VOCDataset's interface.

    Args:
        annotations: the COCO JSON file (e.g. annotations/instances_val2017.json).
        images: the folder its file_names are relative to (e.g. val2017/).
        classes: category names to keep, in label order (label = index + 1); objects of other categories are
            left out. By default every category, by increasing id.
        transforms: a callable (image, target) -> (image, target), e.g. RandomHorizontalFlip().

    All annotations are read here, so a bad file fails at construction; images are only checked to exist.
    Attributes as VOCDataset's: `ids` (str image ids, in the JSON's order), `annotations[i]` (item i's target
    before transforms: dict(image_id=str, boxes=[G, 4] float32 xyxy orig px, labels=[G] int64 in 1..C,
    difficult=[G] bool, orig_size=(H, W))), `classes` (names in label order), `year_dir` (the images folder),
    and `category_ids` (COCO's id of each label, in label order). Images without objects are kept (G = 0).
    """

    def __init__(self, annotations, images, classes: Optional[Sequence[str]] = None,
                 transforms: Optional[Callable] = None):
        self.json = Path(annotations)
        self.year_dir = Path(images)  # VOCDataset's name for the folder that messages name (train.py reads it)
        self.transforms = transforms
        data = read_coco_json(self.json)
        self.category_ids, self.classes = _categories(self.json, data["categories"], classes)
        self._files, sizes = self._images(data["images"])
        self.ids = [str(image_id) for image_id in sizes]
        self.annotations = self._objects(data["annotations"], sizes, {c["id"] for c in data["categories"]})

    def _images(self, images: list) -> tuple:
        """({str id: file_name}, {id: (H, W)}), in the JSON's order; each file checked to exist."""
        files, sizes = {}, {}
        for i, image in enumerate(images):
            image_id = _get(image, "id", f"{self.json}, images[{i}]")
            where = f"{self.json}, image id {image_id}"
            if image_id in sizes:
                raise ValueError(f"{where} is listed twice in 'images'")
            files[str(image_id)] = _get(image, "file_name", where)
            sizes[image_id] = (int(_get(image, "height", where)), int(_get(image, "width", where)))
            path = self.year_dir / files[str(image_id)]
            if not path.is_file():
                raise FileNotFoundError(f"image {path} not found (listed in {where})")
        return files, sizes

    def _objects(self, annotations: list, sizes: dict, known_categories: set) -> list[dict]:
        """Each image's target dict, in `sizes` order; objects in file order, other categories left out."""
        label_of = {category: k + 1 for k, category in enumerate(self.category_ids)}
        objects = {image_id: [] for image_id in sizes}
        for i, ann in enumerate(annotations):
            where = f"{self.json}, annotation id {_get(ann, 'id', f'{self.json}, annotations[{i}]')}"
            image_id, category = _get(ann, "image_id", where), _get(ann, "category_id", where)
            if image_id not in objects:
                raise ValueError(f"{where}: image_id {image_id!r} is not in 'images'")
            if category not in known_categories:
                raise ValueError(f"{where}: category_id {category!r} is not in 'categories' "
                                 f"(ids there: {', '.join(map(str, sorted(known_categories)))})")
            if category in label_of:
                box = _box(_get(ann, "bbox", where), where, sizes[image_id])
                objects[image_id].append((box, label_of[category], ann.get("iscrowd", 0) == 1))
        return [self._target(image_id, found, sizes[image_id]) for image_id, found in objects.items()]

    @staticmethod
    def _target(image_id, objects: list, size: tuple) -> dict:
        boxes, labels, crowd = zip(*objects) if objects else ((), (), ())
        return dict(image_id=str(image_id),
                    boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # [G, 4]
                    labels=torch.tensor(labels, dtype=torch.int64), difficult=torch.tensor(crowd, dtype=torch.bool),
                    orig_size=size)

    def image_path(self, image_id: str) -> Path:
        """images / file_name of the image with this id."""
        return self.year_dir / self._files[image_id]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple:
        ann = self.annotations[index]
        return load_item(self.image_path(ann["image_id"]), ann, str(self.json), self.transforms)


def voc_to_coco(dataset: VOCDataset) -> dict:
    """A VOCDataset's annotations as a COCO dict (json.dumps it to write a COCO file).

    Image i (in dataset.ids order) gets id i + 1, as COCO ids are integers and VOC2012's ("2007_000027") are
    not; file_name is relative to VOC{year}/JPEGImages; width and height come from orig_size. Each box becomes
    an annotation with bbox [x, y, w, h] orig px, area w * h (COCO's own files give the mask area there),
    iscrowd = difficult, and category_id = label, so categories are ids 1..C named by dataset.classes.
    """
    jpegs, images, annotations = dataset.year_dir / "JPEGImages", [], []
    for number, ann in enumerate(dataset.annotations, start=1):
        height, width = ann["orig_size"]
        images.append(dict(id=number, file_name=dataset.image_path(ann["image_id"]).relative_to(jpegs).as_posix(),
                           width=width, height=height))
        for box, label, difficult in zip(ann["boxes"].tolist(), ann["labels"].tolist(), ann["difficult"].tolist()):
            bbox = coco_bbox(box)
            annotations.append(dict(id=len(annotations) + 1, image_id=number, category_id=label, bbox=bbox,
                                    area=bbox[2] * bbox[3], iscrowd=int(difficult)))
    categories = [dict(id=k + 1, name=name) for k, name in enumerate(dataset.classes)]
    return dict(images=images, annotations=annotations, categories=categories)

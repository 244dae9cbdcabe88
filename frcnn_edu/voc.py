"""The PASCAL VOC reader: a VOCdevkit folder as (image, target) pairs, for VOC2007, VOC2012 and the built-in dataset.

Stage: the input of Faster R-CNN (arXiv:1506.01497v3 §4: PASCAL VOC 2007 and 2012). Notebooks: every notebook
that trains or evaluates reads its images here, on the built-in dataset by default.

Takes a VOCdevkit folder; gives (image, target) pairs:
    image:  [3, H, W] float32 RGB in [0, 1], orig px (the JPEG as it is on disk: no resize, no normalisation).
    target: boxes [G, 4] float32, xyxy, orig px; labels [G] int64 in 1..C; difficult [G] bool;
            image_id str; orig_size (H, W) ints.

Frames and conventions (STYLE.md):
- Boxes are xyxy, 0-based and continuous: pixel i covers [i, i+1), width = x2 - x1, 0 <= x1 < x2 <= W.
  VOC's XML is 1-based and inclusive (a box over pixels 1..3 has xmin=1, xmax=3), so `parse_voc_xml`
  converts once, to (xmin - 1, ymin - 1, xmax, ymax); nothing downstream adds or subtracts 1.
- Labels are 1..C in the order of `classes` (VOC_CLASSES: aeroplane=1 ... tvmonitor=20); 0 is background and
  never appears in a target.
- `difficult` objects (VOC's flag for hard-to-recognise ones) are kept by default: evaluation needs them, to
  ignore detections that hit them (metrics.py). Training may drop them (keep_difficult=False), as
  py-faster-rcnn does (`lib/datasets/pascal_voc.py`: config 'use_diff': False).

Where the data comes from: voc_download (the official archives), voc_subset (a few classes), builtin_dataset
(three shape classes on photo backgrounds, in this same layout):
    from frcnn_edu.augment import RandomHorizontalFlip
    from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
    voc_root = make_builtin_dataset("data/builtin")          # -> data/builtin/VOCdevkit (idempotent)
    train = VOCDataset(voc_root, year="builtin", image_set="trainval", classes=BUILTIN_CLASSES,
                       transforms=RandomHorizontalFlip(0.5, torch.Generator().manual_seed(0)))
    loader = torch.utils.data.DataLoader(train, batch_size=2, shuffle=True, collate_fn=collate)
"""
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .voc_download import DATASETS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")  # the devkit's order (VOCinit.m): label = index + 1
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"


def load_image(path) -> Tensor:
    """Reads a JPEG as [3, H, W] float32 RGB in [0, 1], orig px."""
    with Image.open(path) as im:
        pixels = np.array(im.convert("RGB"))  # [H, W, 3] uint8
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)  # [H, W, 3] -> [3, H, W]


def _number(element: ET.Element, tag: str, where: str) -> float:
    text = element.findtext(tag)
    try:
        return float(text)
    except (TypeError, ValueError):
        found = "missing" if text is None else f"{text!r}"
        raise ValueError(f"{where}: <{tag}> is {found}, expected a number") from None


def _parse_object(obj: ET.Element, where: str, classes: Sequence[str], size: tuple) -> tuple:
    """(box [4] xyxy 0-based continuous, label, difficult) of one <object>; `where` names file and index."""
    name = (obj.findtext("name") or "").strip()
    if name not in classes:
        raise ValueError(f"{where}: unknown class {name!r}; known classes: {', '.join(classes)}")
    xmin, ymin, xmax, ymax = (_number(obj, f"bndbox/{t}", where) for t in ("xmin", "ymin", "xmax", "ymax"))
    if xmax < xmin or ymax < ymin:
        raise ValueError(f"{where}: degenerate box xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g} "
                         "(VOC boxes are 1-based inclusive: need xmin <= xmax and ymin <= ymax)")
    height, width = size
    # The one conversion from VOC's 1-based inclusive pixels; clamped to the image, which VOC's own boxes are.
    box = (max(xmin - 1, 0.0), max(ymin - 1, 0.0), min(xmax, width), min(ymax, height))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"{where}: box xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g} lies "
                         f"outside the {width}x{height} image")
    difficult = obj.findtext("difficult")  # absent in some files: not difficult (as the devkit reads it)
    return box, classes.index(name) + 1, difficult is not None and difficult.strip() == "1"


def parse_voc_xml(path, classes: Sequence[str] = VOC_CLASSES, skip_other_classes: bool = False) -> dict:
    """Reads one VOC annotation file, converting its boxes to 0-based continuous orig px.

    Args:
        path: the Annotations/{id}.xml file.
        classes: class names; an object named classes[k] gets label k + 1.
        skip_other_classes: leave out objects of classes not in `classes` (a subset such as cat, dog of the
            20 VOC classes) instead of raising.

    Returns:
        dict(boxes=[G, 4] float32 xyxy orig px, labels=[G] int64 in 1..len(classes), difficult=[G] bool,
        orig_size=(H, W) ints from <size>), objects in file order. Raises ValueError naming the file (and the
        object index, 0-based in file order) for a malformed file, unknown class or degenerate box.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: malformed XML ({err})") from None
    size = (int(_number(root, "size/height", str(path))), int(_number(root, "size/width", str(path))))
    # findall takes direct children only: a VOC2012 person's <part>s (head, hand) have <name> and <bndbox> too.
    objects = [_parse_object(obj, f"{path}, object {i}", classes, size) for i, obj in enumerate(root.findall("object"))
               if not skip_other_classes or (obj.findtext("name") or "").strip() in classes]
    boxes, labels, difficult = zip(*objects) if objects else ((), (), ())
    return dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # [G, 4]
                labels=torch.tensor(labels, dtype=torch.int64), difficult=torch.tensor(difficult, dtype=torch.bool),
                orig_size=size)


def how_to_get(devkit: Path, year: str) -> str:
    """What to run to make devkit/VOC{year}: the one place that says it, for every error about a missing folder."""
    if year == "builtin":
        base = devkit.parent if devkit.name == "VOCdevkit" else devkit
        return (f"create it with `frcnn-edu builtin --root {base}` (or make_builtin_dataset({str(base)!r})), "
                f"then pass root={str(base / 'VOCdevkit')!r}")
    if f"voc{year}" in DATASETS:
        return (f"download PASCAL VOC{year} with `frcnn-edu download voc{year} --root {devkit.parent}`, or from "
                f"{VOC_URL} by hand, extracted so that {devkit}/VOC{year} exists")
    return f"download PASCAL VOC{year} from {VOC_URL} and extract it so that {devkit}/VOC{year} exists"


def year_dir(devkit: Path, year: str) -> Path:
    """devkit/VOC{year}, or a FileNotFoundError that says what is there and how to make it."""
    devkit, path = Path(devkit), Path(devkit) / f"VOC{year}"
    if path.is_dir():
        return path
    if not devkit.is_dir():
        raise FileNotFoundError(f"{devkit} not found: {how_to_get(devkit, year)}")
    if (devkit / "VOCdevkit" / f"VOC{year}").is_dir():
        raise FileNotFoundError(f"{path} not found; did you mean root={str(devkit / 'VOCdevkit')!r}?")
    there = ", ".join(sorted(p.name for p in devkit.glob("VOC*") if p.is_dir())) or "none"
    raise FileNotFoundError(f"{path} not found: {how_to_get(devkit, year)} (year folders there: {there})")


def read_image_set(year_dir: Path, image_set: str) -> list[str]:
    """The image ids of VOC{year}/ImageSets/Main/{image_set}.txt, in file order."""
    path = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)  # not per-class lists
        raise FileNotFoundError(f"image set {path} not found; image sets there: {', '.join(known) or 'none'}")
    ids = path.read_text().split()
    if not ids:
        raise ValueError(f"image set {path} is empty")
    return ids


class VOCDataset(torch.utils.data.Dataset):
    """A PASCAL VOC image set (VOC2007, VOC2012, or the built-in dataset) as (image, target) pairs.

    Args:
        root: a VOCdevkit folder, holding VOC{year}/ (VOC2007/, VOC2012/, or VOCbuiltin/).
        year: "2007", "2012", or "builtin" (with classes=BUILTIN_CLASSES).
        image_set: a list in VOC{year}/ImageSets/Main, e.g. "trainval", "train", "val", "test".
        keep_difficult: keep objects flagged difficult. Keep them (the default) for evaluation, where
            detections that hit them are ignored; drop them for training if you like.
        transforms: a callable (image, target) -> (image, target), e.g. RandomHorizontalFlip().
        classes: class names in label order (label = index + 1).
        skip_other_classes: leave out objects of other classes (for a class subset written by
            `frcnn-edu subset`); by default they raise, which catches a wrong class list.

    All annotations are parsed here, so a bad file fails at construction; images are only checked to exist.
    `annotations[i]` is item i's target before transforms (boxes in orig px), for evaluation without images.
    Items: image [3, H, W] float32 RGB in [0, 1]; target dict(boxes=[G, 4] float32 xyxy 0-based continuous
    orig px, labels=[G] int64 in 1..C, difficult=[G] bool, image_id=str, orig_size=(H, W)).
    """

    def __init__(self, root, year: str = "2007", image_set: str = "trainval", keep_difficult: bool = True,
                 transforms: Optional[Callable] = None, classes: Sequence[str] = VOC_CLASSES,
                 skip_other_classes: bool = False):
        self.root = Path(root)
        self.skip_other_classes = skip_other_classes
        self.classes = tuple(classes)
        self.transforms = transforms
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC root {self.root} not found: {how_to_get(self.root, str(year))}")
        self.year_dir = year_dir(self.root, str(year))
        self.ids = read_image_set(self.year_dir, image_set)
        self.annotations = [self._annotation(image_id, keep_difficult) for image_id in self.ids]

    def _annotation(self, image_id: str, keep_difficult: bool) -> dict:
        xml = self.year_dir / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"annotation {xml} not found (listed in image set {image_id!r})")
        if not self.image_path(image_id).is_file():
            raise FileNotFoundError(f"image {self.image_path(image_id)} not found (annotated in {xml})")
        ann = parse_voc_xml(xml, self.classes, self.skip_other_classes)
        if not keep_difficult:
            keep = ~ann["difficult"]
            ann.update(boxes=ann["boxes"][keep], labels=ann["labels"][keep], difficult=ann["difficult"][keep])
        return dict(image_id=image_id, **ann)

    def image_path(self, image_id: str) -> Path:
        """VOC{year}/JPEGImages/{image_id}.jpg."""
        return self.year_dir / "JPEGImages" / f"{image_id}.jpg"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple:
        ann = self.annotations[index]
        return load_item(self.image_path(ann["image_id"]), ann, "its annotation", self.transforms)


def load_item(path: Path, annotation: dict, source: str, transforms: Optional[Callable]) -> tuple:
    """(image [3, H, W] float32 in [0, 1], target) for a dataset's item: the image read from `path`, checked
    against the annotation's orig_size (ValueError naming the file and `source`, what says the size), the target a
    copy of the annotation (so transforms cannot change the dataset's), then transforms applied if any."""
    image = load_image(path)
    if tuple(image.shape[1:]) != annotation["orig_size"]:
        raise ValueError(f"{path} is {image.shape[2]}x{image.shape[1]} (WxH) but {source} says "
                         f"{annotation['orig_size'][1]}x{annotation['orig_size'][0]}")
    target = {k: v.clone() if isinstance(v, Tensor) else v for k, v in annotation.items()}  # keep ours intact
    if transforms is not None:
        image, target = transforms(image, target)
    return image, target


def collate(batch: Sequence[tuple]) -> tuple:
    """DataLoader collate_fn: [(image, target), ...] -> ([image, ...], [target, ...]), images of any size."""
    images, targets = zip(*batch)
    return list(images), list(targets)

"""PASCAL VOC data: the VOCdevkit reader, the built-in shapes dataset, the paper's flip, and collate.

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

The built-in dataset (datasets/builtin.py, its README in datasets/README.md): three shape classes on cluttered
photo backgrounds, about 256x256, made from a seed in seconds and written in VOCdevkit layout, so it goes through
the very same reader:
    voc_root = make_builtin_dataset("data/builtin")          # -> data/builtin/VOCdevkit (idempotent)
    train = VOCDataset(voc_root, year="builtin", image_set="trainval", classes=BUILTIN_CLASSES,
                       transforms=RandomHorizontalFlip(0.5, torch.Generator().manual_seed(0)))
    loader = torch.utils.data.DataLoader(train, batch_size=2, shuffle=True, collate_fn=collate)
"""
import functools
import math
import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")  # the devkit's order (VOCinit.m): label = index + 1
BUILTIN_CLASSES = ("ellipse", "rectangle", "triangle")  # datasets/builtin.py CLASSES (a test checks they agree)
_BUILTIN_SCRIPT = Path(__file__).resolve().parent.parent / "datasets" / "builtin.py"
_VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"


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


def _how_to_create(voc_root: Path, year: str) -> str:
    if year == "builtin":
        base = voc_root.parent if voc_root.name == "VOCdevkit" else voc_root
        return (f"create it from the repository root with `python datasets/builtin.py --root {base}` or "
                f"frcnn_edu.data.make_builtin_dataset({str(base)!r}), then pass root={str(base / 'VOCdevkit')!r}")
    return f"download PASCAL VOC{year} from {_VOC_URL} and extract it so that {voc_root}/VOC{year} exists"


def _year_dir(root: Path, year: str) -> Path:
    """root/VOC{year}, or a FileNotFoundError that says how to make it."""
    year_dir = root / f"VOC{year}"
    if year_dir.is_dir():
        return year_dir
    if (root / "VOCdevkit" / f"VOC{year}").is_dir():
        raise FileNotFoundError(f"{year_dir} not found; did you mean root={str(root / 'VOCdevkit')!r}?")
    raise FileNotFoundError(f"{year_dir} not found: {_how_to_create(root, year)}")


def _read_image_set(year_dir: Path, image_set: str) -> list:
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
            `python -m frcnn_edu.datasets subset`); by default they raise, which catches a wrong class list.

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
            raise FileNotFoundError(f"VOC root {self.root} not found: {_how_to_create(self.root, str(year))}")
        self.year_dir = _year_dir(self.root, str(year))
        self.ids = _read_image_set(self.year_dir, image_set)
        self.annotations = [self._annotation(image_id, keep_difficult) for image_id in self.ids]

    def _annotation(self, image_id: str, keep_difficult: bool) -> dict:
        xml = self.year_dir / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"annotation {xml} not found (listed in image set {image_id!r})")
        if not self._image_path(image_id).is_file():
            raise FileNotFoundError(f"image {self._image_path(image_id)} not found (annotated in {xml})")
        ann = parse_voc_xml(xml, self.classes, self.skip_other_classes)
        if not keep_difficult:
            keep = ~ann["difficult"]
            ann.update(boxes=ann["boxes"][keep], labels=ann["labels"][keep], difficult=ann["difficult"][keep])
        return dict(image_id=image_id, **ann)

    def _image_path(self, image_id: str) -> Path:
        return self.year_dir / "JPEGImages" / f"{image_id}.jpg"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple:
        ann = self.annotations[index]
        image = load_image(self._image_path(ann["image_id"]))
        if tuple(image.shape[1:]) != ann["orig_size"]:
            raise ValueError(f"{self._image_path(ann['image_id'])} is {image.shape[2]}x{image.shape[1]} (WxH) but "
                             f"its annotation says {ann['orig_size'][1]}x{ann['orig_size'][0]}")
        target = {k: v.clone() if isinstance(v, Tensor) else v for k, v in ann.items()}  # keep ours intact
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def hflip(image: Tensor, target: dict) -> tuple:
    """Mirrors image [3, H, W] and target["boxes"] [G, 4] (xyxy, same px): x1' = W - x2, x2' = W - x1.

    In the continuous frame pixel i, covering [i, i+1), goes to W - 1 - i, covering [W - i - 1, W - i): a box
    edge at x goes to W - x, with no -1. Flipping twice gives the input back.
    """
    width = image.shape[-1]
    x1, y1, x2, y2 = target["boxes"].unbind(dim=1)
    boxes = torch.stack([width - x2, y1, width - x1, y2], dim=1)  # [G, 4]
    return image.flip(-1), {**target, "boxes": boxes}


def zoom_crop(image: Tensor, target: dict, draw: Tensor) -> tuple:
    """Crops image [3, H, W] to a window that keeps every object whole: after the model's rescale, a zoom in.

    Not in the papers (flips only): an augmentation for small datasets trained from scratch, where the tiny
    backbone otherwise memorises the 500 built-in images (train mAP 0.95 against test 0.87). The window has
    the image's aspect ratio and 50 to 100% of its side, is widened where needed to hold the union of the
    objects, and sits at a random place that contains that union; boxes follow (px of the crop).

    Args:
        draw: [3] uniform numbers in [0, 1): side, x and y position (drawn by the caller, for reproducibility).
    """
    height, width = image.shape[-2:]
    boxes = target["boxes"]
    side, at_x, at_y = (float(v) for v in draw)
    if len(boxes):
        (ux1, uy1), (ux2, uy2) = boxes[:, :2].amin(dim=0).tolist(), boxes[:, 2:].amax(dim=0).tolist()
    else:  # no object: any window
        ux1 = ux2 = width / 2
        uy1 = uy2 = height / 2
    crop_w = max(width * (0.5 + 0.5 * side), ux2 - ux1)
    crop_h = max(height * (0.5 + 0.5 * side), uy2 - uy1)
    lo_x, hi_x = max(0.0, ux2 - crop_w), min(ux1, width - crop_w)  # left edges that keep the union inside
    lo_y, hi_y = max(0.0, uy2 - crop_h), min(uy1, height - crop_h)
    x1, y1 = math.floor(lo_x + at_x * (hi_x - lo_x)), math.floor(lo_y + at_y * (hi_y - lo_y))
    x2, y2 = min(width, math.ceil(x1 + crop_w)), min(height, math.ceil(y1 + crop_h))
    shift = torch.tensor([x1, y1, x1, y1], dtype=boxes.dtype)
    return image[:, y1:y2, x1:x2], {**target, "boxes": boxes - shift}


class RandomHorizontalFlip:
    """Flips (image, target) with probability p: the papers' only augmentation. Fast R-CNN (arXiv:1504.08083v2
    §2.3, mini-batch sampling): "images are horizontally flipped with probability 0.5. No other data
    augmentation is used"; Faster R-CNN trains the same way (py-faster-rcnn: TRAIN.USE_FLIPPED = True).
    Pass a seeded torch.Generator to make the flips reproducible; DataLoader workers each get a copy of it,
    hence the same sequence each.
    """

    def __init__(self, p: float = 0.5, generator: Optional[torch.Generator] = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def __call__(self, image: Tensor, target: dict) -> tuple:
        if torch.rand((), generator=self.generator).item() < self.p:
            return hflip(image, target)
        return image, target


def collate(batch: Sequence[tuple]) -> tuple:
    """DataLoader collate_fn: [(image, target), ...] -> ([image, ...], [target, ...]), images of any size."""
    images, targets = zip(*batch)
    return list(images), list(targets)


@functools.lru_cache(maxsize=1)
def _builtin_generator():
    """datasets/builtin.py, loaded by path: it lives beside the package, in the source checkout."""
    if not _BUILTIN_SCRIPT.is_file():
        raise FileNotFoundError(f"{_BUILTIN_SCRIPT} not found: the built-in dataset's generator ships with the "
                                "source checkout; install frcnn_edu from it with `pip install -e .`")
    spec = importlib.util.spec_from_file_location("frcnn_edu_builtin_dataset", _BUILTIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def builtin_version() -> int:
    """The built-in dataset generator's version: a new one draws other images from the same seed."""
    return _builtin_generator().VERSION


def make_builtin_dataset(root, seed: int = 0, num_train: int = 500, num_test: int = 200) -> Path:
    """Makes the built-in dataset under root (unless a finished one with these arguments is there).

    Args:
        root: the folder to write into; the images go to root/VOCdevkit/VOCbuiltin.
        seed: everything is drawn from numpy.random.default_rng((seed, split, index)).
        num_train, num_test: sizes of the trainval and test image sets.

    Returns:
        root/VOCdevkit, for VOCDataset(path, year="builtin", classes=BUILTIN_CLASSES). A folder without its
        manifest (builtin.json, written last) or with other arguments is regenerated from scratch.
    """
    generator = _builtin_generator()
    if not generator.is_complete(root, seed, num_train, num_test):
        generator.generate(root, seed, num_train, num_test)
    return Path(root) / "VOCdevkit"

"""The images a training run reads: its splits, epoch plans, and batches streamed from disk or memory.

- Splits: the built-in dataset, PASCAL VOC (one year, or several joined: `--year 2007+2012`, the paper's "07+12"),
  or a COCO-format JSON file with its image folder (`--data coco`).
- Epoch plans: each epoch's batches, flips and zoom crops are drawn from (seed, epoch) alone, so a resumed run
  redraws the same, whatever reads the images and however many processes share the work.
- Batches: FromDisk decodes each image when a batch needs it, in DataLoader worker processes (`--workers`), so a
  run's memory does not grow with the dataset (VOC 07+12 trainval decoded is about 9 GB of uint8); InMemory decodes
  a split once (fast for the small built-in set, `--in-memory`). Both give the same pixels, so the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .augment import hflip, zoom_crop
from .builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from .cache import cache_path
from .voc import VOC_CLASSES, VOCDataset, collate


def class_names(args) -> tuple[str, ...]:
    """--classes, else the dataset's own list (COCO: its categories, read from --annotations)."""
    if args.classes:
        return tuple(args.classes)
    if args.data == "coco":
        from .coco import COCODataset
        return COCODataset(*_coco_files(args)).classes
    return BUILTIN_CLASSES if args.data == "builtin" else VOC_CLASSES


def _coco_files(args, test: bool = False) -> tuple[str, str]:
    """(annotations JSON, image folder) of the training split, or of the test split (default: the training's)."""
    if not args.annotations or not args.images:
        raise ValueError("--data coco needs --annotations FILE.json and --images FOLDER")
    if test:
        return args.test_annotations or args.annotations, args.test_images or args.images
    return args.annotations, args.images


def _years(args) -> list[str]:
    """--year split on '+': ["2007", "2012"] for "2007+2012"; the built-in set's own year when none is given."""
    years = [y.strip() for y in (args.year or ("builtin" if args.data == "builtin" else "2007")).split("+")]
    if not all(years):
        raise ValueError(f"--year must be years joined by '+', e.g. 2007+2012, got {args.year!r}")
    return years


def load_split(args, image_set: str, test: bool = False) -> list:
    """The datasets of one image set: one per year (`--year 2007+2012`: both trainval sets to train on; for the
    test split only the first year's, as the paper tests 07+12 on VOC2007 test), or the COCO file's images.
    The built-in dataset is generated on first use."""
    if args.data == "coco":
        from .coco import COCODataset
        return [COCODataset(*_coco_files(args, test), classes=args.classes or None)]  # None: the file's categories
    if args.data == "builtin":
        voc_root = make_builtin_dataset(args.root or None, seed=0)
    elif args.data == "voc":
        voc_root = Path(args.root or cache_path("voc", "VOCdevkit"))
        if not voc_root.is_dir():
            raise FileNotFoundError(f"--root {voc_root} is not a folder; it must be a VOCdevkit folder "
                                    f"(frcnn-edu download voc2007 --root data, then --root data/VOCdevkit)")
    else:
        raise ValueError(f"--data must be 'builtin', 'voc' or 'coco', got {args.data!r}")
    years = _years(args)[:1] if test else _years(args)
    # --classes cat,dog picks a subset of the dataset's classes: objects of the others are left out
    splits = [VOCDataset(voc_root, year=year, image_set=image_set, classes=class_names(args),
                         skip_other_classes=bool(args.classes)) for year in years]
    for split, year in zip(splits, years):
        if len(split) == 0:
            raise ValueError(f"image set {image_set!r} of VOC{year} in {voc_root} is empty")
    if not any(len(a["labels"]) for split in splits for a in split.annotations):
        raise ValueError(f"image set {image_set!r} in {voc_root} has no object of class "
                         f"{', '.join(class_names(args))}; check --classes")
    return splits


def read_pixels(path: Path) -> Tensor:
    """An image file as [3, H, W] uint8 RGB, orig px (a quarter of float32's memory)."""
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


class FromDisk:
    """The images and targets of one or more datasets, joined, decoding each image when it is read: memory stays
    flat whatever the dataset's size. targets[i]: dict(boxes [G, 4] float32 xyxy orig px, labels [G] int64,
    difficult [G] bool), as the datasets' annotations; ids[i] the dataset's id of image i; category_ids: a COCO
    file's category id of each label (None for VOC, whose labels are the ids)."""

    def __init__(self, datasets):
        datasets = datasets if isinstance(datasets, (list, tuple)) else [datasets]
        self.ids = [i for d in datasets for i in d.ids]
        self.category_ids = getattr(datasets[0], "category_ids", None)
        self.paths = [d.image_path(i) for d in datasets for i in d.ids]
        self.targets = [a for d in datasets for a in d.annotations]
        self.folder = " + ".join(str(d.year_dir) for d in datasets)

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, index: int) -> Tensor:
        return read_pixels(self.paths[index])

    def get(self, index: int, flip: bool, device: torch.device, zoom: Tensor | None = None) -> tuple[Tensor, dict]:
        """Image `index` as float [3, H, W] in [0, 1] and its target, zoom-cropped (zoom: augment.zoom_crop's draw,
        or None) and flipped on the CPU, then moved to device. The target leaves out difficult objects (COCO's crowd
        regions), as py-faster-rcnn trains without them; evaluation, which reads .targets, ignores them instead."""
        image, target = self.pixels(index), self.targets[index]
        plain = ~target["difficult"]
        target = dict(boxes=target["boxes"][plain], labels=target["labels"][plain])
        if zoom is not None:
            image, target = zoom_crop(image, target, zoom)
        image = image.float().div_(255)
        if flip:
            image, target = hflip(image, target)
        return image.to(device), {k: v.to(device) for k, v in target.items()}


class InMemory(FromDisk):
    """Decodes every image once, up front, and keeps it as uint8: epochs then cost no I/O."""

    def __init__(self, datasets):
        super().__init__(datasets)
        self.images = [read_pixels(path) for path in self.paths]

    def pixels(self, index: int) -> Tensor:
        return self.images[index]


@dataclass
class EpochPlan:
    """One epoch's batches (lists of image indices) and per-image augmentation, drawn from (seed, epoch) alone,
    so a resumed run redraws the same. flips: [I] bool. zooms: [I, 3] zoom_crop draws, rows of NaN for none."""

    batches: list[list[int]]
    flips: Tensor
    zooms: Tensor

    def augment(self, index: int) -> tuple[bool, Tensor | None]:
        return bool(self.flips[index]), None if self.zooms[index].isnan().any() else self.zooms[index]


def epoch_plan(num_images: int, batch_size: int, seed: int, epoch: int, flip: bool, zoom: float = 0.0) -> EpochPlan:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_images, generator=generator)
    flips = (torch.rand(num_images, generator=generator) < 0.5) & flip
    zooms = torch.rand(num_images, 3, generator=generator)
    zooms[torch.rand(num_images, generator=generator) >= zoom] = float("nan")
    batches = [order[i : i + batch_size].tolist() for i in range(0, num_images - batch_size + 1, batch_size)]
    return EpochPlan(batches, flips, zooms)


class _Planned(torch.utils.data.Dataset):
    """Item i: image i of `images`, augmented as the plan says, on the CPU (what a DataLoader worker returns)."""

    def __init__(self, images: FromDisk, plan: EpochPlan):
        self.images, self.plan = images, plan

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        flip, zoom = self.plan.augment(index)
        return self.images.get(index, flip, torch.device("cpu"), zoom)


def planned_batches(images: FromDisk, plan: EpochPlan, batches: list[list[int]], workers: int,
                    pin: bool = False) -> Iterator[tuple[list[Tensor], list[dict]]]:
    """The given batches of the plan as (images, targets) lists on the CPU, in order. workers > 0 decodes and
    augments them in that many DataLoader processes, a few batches ahead of the training step, and with `pin`
    (training on a GPU) puts them in pinned memory, from which a copy to the GPU does not wait for it."""
    planned = _Planned(images, plan)
    if workers == 0:
        return (collate([planned[i] for i in batch]) for batch in batches)
    # a generator of its own: a DataLoader otherwise seeds its workers from torch's global random stream, which
    # would shift the model's anchor and RoI samples, and a run would train differently with workers than without
    return iter(torch.utils.data.DataLoader(planned, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                            prefetch_factor=2, pin_memory=pin,
                                            generator=torch.Generator().manual_seed(0)))

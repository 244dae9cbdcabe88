"""A small PASCAL VOC to train on: a seeded, class-balanced subset of a few classes, written as two image lists.

    frcnn-edu subset --root data --classes cat,dog --max-images 300 --name catdog
    frcnn-edu train --data voc --root data/VOCdevkit --year 2007 --classes cat,dog \
        --image-set catdog_trainval --test-set catdog_test

The lists are VOC{year}/ImageSets/Main/{name}_trainval.txt and {name}_test.txt, in round-robin order over the
chosen classes, the test images drawn from VOC2007 test when it is there, else held out from trainval. Nothing
else is written: no annotation is changed. The VOCdevkit comes from voc_download; the reader is voc.VOCDataset.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from . import voc
from .cache import cache_path
from .exit_status import exit_status
from .voc import VOC_CLASSES


def devkit_folder(root: Path) -> Path:
    """root/VOCdevkit, or root itself when it is the VOCdevkit folder (both forms are accepted on the command line)."""
    return root / "VOCdevkit" if (root / "VOCdevkit").is_dir() or root.name != "VOCdevkit" else root


def image_ids(year_dir: Path, image_set: str) -> list[str]:
    """The distinct ids of an image set, sorted (the subset must not depend on the list's order)."""
    return sorted(set(voc.read_image_set(year_dir, image_set)))


def object_classes(year_dir: Path, image_id: str) -> set[str]:
    """The class names of the <object>s of Annotations/{image_id}.xml (direct children: not a person's parts)."""
    path = year_dir / "Annotations" / f"{image_id}.xml"
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation {path} not found (listed in an image set)") from None
    except ET.ParseError as error:
        raise ValueError(f"{path}: malformed XML ({error})") from None
    return {(obj.findtext("name") or "").strip() for obj in root.findall("object")}


def balanced_order(ids: Sequence[str], classes_of: dict, classes: Sequence[str], seed: int) -> list[str]:
    """The images that hold at least one of `classes`, in round-robin order over the classes.

    Each class's images are shuffled by (seed, class name); then class 1 gives its next image not yet taken,
    then class 2, and so on, until every list is used up. Any prefix of the result is balanced: its images
    are spread as evenly over the classes as the data allow (an image with two classes counts once).
    """
    queues = []
    for name in classes:
        queue = sorted(i for i in ids if name in classes_of[i])
        random.Random(f"{seed}:{name}").shuffle(queue)
        queues.append(queue)
    order, taken = [], set()
    while any(queues):
        for queue in queues:
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue:
                taken.add(queue[0])
                order.append(queue.pop(0))
    return order


def hold_out(order: Sequence[str], max_images: int, max_test: int) -> tuple[list[str], list[str]]:
    """Splits the first max_images + max_test images of a balanced order, every k-th to test, so that both
    parts stay balanced: (trainval ids, test ids), in the proportion max_images : max_test."""
    head, share = order[: max_images + max_test], max_test / (max_images + max_test)
    to_test = [int((k + 1) * share) > int(k * share) for k in range(len(head))]
    return [i for i, t in zip(head, to_test) if not t], [i for i, t in zip(head, to_test) if t]


def _check_subset_args(classes: Sequence[str], name: str, max_images: int, max_test: int) -> None:
    for c in classes:
        if c not in VOC_CLASSES:
            raise ValueError(f"--classes: {c!r} is not a PASCAL VOC class; the classes are {', '.join(VOC_CLASSES)}")
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"--classes must name distinct classes, got {','.join(classes)!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", name) or name in VOC_CLASSES:
        raise ValueError(f"--name must be letters, digits and '-' and not a VOC class name (VOC's own "
                         f"{{class}}_trainval.txt lists are there), got {name!r}")
    if max_images < 1 or max_test < 1:
        raise ValueError(f"--max-images and --max-test must be >= 1, got {max_images} and {max_test}")


def _write_list(path: Path, ids: Sequence[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{i}\n" for i in sorted(ids)))
    os.replace(tmp, path)


def subset(root: str | Path | None, classes: Sequence[str], name: str, max_images: int = 300, max_test: int = 0,
           year: str = "2007", seed: int = 0) -> dict:
    """Writes VOC{year}/ImageSets/Main/{name}_trainval.txt and {name}_test.txt: images of `classes` only.

    Args:
        root: the folder holding VOCdevkit (as for voc_download.download; None: cache_path("voc")), or the
            VOCdevkit folder itself.
        classes: VOC class names; images none of whose objects is of these classes are left out.
        name: the lists' prefix: letters, digits, '-'; not a class name (VOC's own {class}_*.txt lists).
        max_images, max_test: at most this many images in each list (max_test 0: as many as max_images).
        year: the year folder; its test.txt (VOC2007 test) gives the test images when present, else a part of
            trainval is held out: the first max_images + max_test of the balanced order, every k-th to test.
        seed: for the shuffles of balanced_order.

    Returns:
        dict(trainval=Path, test=Path, test_source=str, counts={split: {class: images holding it}},
        overlap=number of images in both lists (0 for real VOC; the test fixture lists the same images twice)).
    """
    classes, max_test = list(classes), max_test or max_images
    _check_subset_args(classes, name, max_images, max_test)
    root = Path(root) if root is not None else cache_path("voc")
    year_dir = voc.year_dir(devkit_folder(root), str(year))
    trainval = image_ids(year_dir, "trainval")
    has_test = (year_dir / "ImageSets" / "Main" / "test.txt").is_file()
    test = image_ids(year_dir, "test") if has_test else []
    classes_of = {i: object_classes(year_dir, i) for i in sorted(set(trainval) | set(test))}
    order = balanced_order(trainval, classes_of, classes, seed)
    if has_test:
        train_ids, test_ids = order[:max_images], balanced_order(test, classes_of, classes, seed)[:max_test]
        source = f"VOC{year} test"
    else:
        train_ids, test_ids = hold_out(order, max_images, max_test)
        source = f"held out from VOC{year} trainval (there is no {year_dir / 'ImageSets/Main/test.txt'})"
    for split, ids in (("trainval", train_ids), ("test", test_ids)):
        if not ids:
            pool = "test" if split == "test" and has_test else "trainval"
            raise ValueError(f"empty subset: no image of {year_dir}/ImageSets/Main/{pool}.txt is left for {split} "
                             f"with an object of class {', '.join(classes)}")
    main = year_dir / "ImageSets" / "Main"
    paths = dict(trainval=main / f"{name}_trainval.txt", test=main / f"{name}_test.txt")
    _write_list(paths["trainval"], train_ids)
    _write_list(paths["test"], test_ids)
    counts = {split: {c: sum(c in classes_of[i] for i in ids) for c in classes}
              for split, ids in (("trainval", train_ids), ("test", test_ids))}
    overlap = len(set(train_ids) & set(test_ids))
    return dict(**paths, test_source=source, counts=counts, overlap=overlap)


# ---- Command line ----

def parser(prog: str = "python -m frcnn_edu.voc_subset") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help=f"the folder holding VOCdevkit, or VOCdevkit itself (default: {cache_path('voc')})")
    p.add_argument("--classes", required=True, help="comma-separated VOC class names, e.g. cat,dog")
    p.add_argument("--name", required=True, help="prefix of the two lists, e.g. catdog")
    p.add_argument("--max-images", type=int, default=300, help="trainval images at most (default 300)")
    p.add_argument("--max-test", type=int, default=0, help="test images at most (default: --max-images)")
    p.add_argument("--year", default="2007")
    p.add_argument("--seed", type=int, default=0)
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu subset`: writes the lists and says what they hold; errors become exit statuses (exit_status.py)."""
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    result = subset(args.root, classes, args.name, args.max_images, args.max_test, args.year, args.seed)
    for split in ("trainval", "test"):
        counts = result["counts"][split]
        print(f"wrote {result[split]}: {len(Path(result[split]).read_text().split())} images "
              f"({', '.join(f'{c} {n}' for c, n in counts.items())})")
    print(f"test images: {result['test_source']}")
    if result["overlap"]:
        print(f"warning: {result['overlap']} test images are also in {result['trainval'].name}")
    year_dir = Path(result["trainval"]).parents[2]
    print(f"train with: frcnn-edu train --data voc --root {year_dir.parent} --year {args.year} "
          f"--classes {','.join(classes)} --image-set {args.name}_trainval --test-set {args.name}_test")


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))

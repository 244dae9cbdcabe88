"""Real PASCAL VOC on disk: download the official archives, and write small class subsets to train on.

    python -m frcnn_edu.datasets download voc2007 --root data       # -> data/VOCdevkit/VOC2007 (trainval + test)
    python -m frcnn_edu.datasets download voc2012 --root data       # -> data/VOCdevkit/VOC2012 (trainval)
    python -m frcnn_edu.datasets subset --root data --classes cat,dog --max-images 300 --name catdog
    python -m frcnn_edu.train --data voc --root data/VOCdevkit --year 2007 --classes cat,dog \
        --image-set catdog_trainval --test-set catdog_test

Stage: the input of Faster R-CNN (arXiv:1506.01497v3 §4: VOC2007 trainval, 5k images, to train and VOC2007 test,
5k images, to evaluate; VOC2012 trainval for "07+12"). The reader is data.VOCDataset; README "Real PASCAL VOC".

Download: each archive comes from the official host, then from its new name (torchvision 0.29's URLs), then from
the usual mirror (pjreddie.com, the same file names), over plain urllib with a short timeout, into
ROOT/downloads/NAME.tar.part; an interrupted download resumes there (HTTP Range). The file is checked against
its MD5 (torchvision/datasets/voc.py's table; a mismatch deletes the file and says so), unpacked into a temporary
folder and only then moved into ROOT/VOCdevkit, so an interrupted run never leaves a half-extracted tree. A
marker file (ROOT/VOCdevkit/.frcnn_edu-voc2007.done) makes a second run a no-op. Offline, put the archives,
downloaded by hand, at ROOT/downloads/NAME.tar: they are used instead of the network.

Subset: a seeded, class-balanced list of images (round-robin over the chosen classes) written as
VOC{year}/ImageSets/Main/{name}_trainval.txt and {name}_test.txt, the test images drawn from VOC2007 test when
it is there, else held out from trainval. Nothing else is written: no annotation is changed.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm.auto import tqdm

from .data import VOC_CLASSES

TIMEOUT_S = 10.0  # seconds per connection attempt and per read: offline, each URL fails at once (DNS) or by then
CHUNK = 1 << 20  # bytes per read


class DownloadError(RuntimeError):
    """A download that could not be done: names the URLs tried, the file, and what to do by hand."""


@dataclass(frozen=True)
class Archive:
    folder: str  # its folder on the official host: voc2007, voc2012
    md5: str  # torchvision/datasets/voc.py, DATASET_YEAR_DICT
    size: int  # bytes, for the checksum message


ARCHIVES = {
    "VOCtrainval_06-Nov-2007.tar": Archive("voc2007", "c52e279531787c972589f7e41ab4ae64", 460_032_000),
    "VOCtest_06-Nov-2007.tar": Archive("voc2007", "b6e924de25625d8de591ea690078ad9f", 451_020_800),
    "VOCtrainval_11-May-2012.tar": Archive("voc2012", "6cd6e144f989b92b3379bac3b3de84fd", 1_999_639_040),
}
DATASETS = {  # name on the command line -> (year folder VOC{year}, its archives)
    "voc2007": ("2007", ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar")),
    "voc2012": ("2012", ("VOCtrainval_11-May-2012.tar",)),  # VOC2012 test annotations were never released
}
MIRRORS = (
    "http://host.robots.ox.ac.uk/pascal/VOC/{folder}/{name}",  # the official host (VOC index.html)
    "https://thor.robots.ox.ac.uk/pascal/VOC/{folder}/{name}",  # its new name, as in torchvision 0.29
    "http://pjreddie.com/media/files/{name}",  # the usual mirror, used by darknet and many READMEs
)


def archive_urls(name: str) -> list[str]:
    return [m.format(folder=ARCHIVES[name].folder, name=name) for m in MIRRORS]


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# ---- Download: fetch with resume, verify, extract through a temporary folder ----

def fetch(url: str, part: Path, timeout: float = TIMEOUT_S) -> None:
    """Downloads url into `part`, continuing after the bytes already there (HTTP Range) with a progress bar.

    The file is opened only once the server has answered, so a failed connection creates nothing. Raises
    OSError (URLError, HTTPError, timeouts) or http.client.HTTPException when the transfer fails.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "frcnn_edu", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # Range Not Satisfiable: nothing after `offset`, the part is whole
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        if status == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise OSError(f"asked for bytes {offset}-, got Content-Range {response.headers.get('Content-Range')}")
        if status != 206:
            offset = 0  # the server ignored Range and sends the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem,
                dynamic_ncols=True, disable=None) as bar:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(error.reason) if isinstance(error, urllib.error.URLError) else f"{type(error).__name__}: {error}"


def download_archive(name: str, downloads: Path, timeout: float = TIMEOUT_S) -> Path:
    """downloads/name: the file already there (downloaded earlier or by hand), else fetched from each URL in turn."""
    path = downloads / name
    if path.is_file():
        return path
    part = downloads / f"{name}.part"
    tried = {}  # url -> why it failed
    for url in archive_urls(name):
        _say(f"downloading {url}" + (f" (resuming after {part.stat().st_size} bytes)" if part.exists() else ""))
        try:
            fetch(url, part, timeout)
        except (OSError, http.client.HTTPException) as error:
            tried[url] = _reason(error)
            continue
        os.replace(part, path)
        return path
    if part.exists() and part.stat().st_size == 0:
        part.unlink()
    kept = f"; kept {part.stat().st_size} bytes in {part}, run again to resume" if part.exists() else ""
    if len(set(tried.values())) == 1:  # offline: the same reason thrice
        where = f"{', '.join(tried)} ({next(iter(tried.values()))})"
    else:
        where = ", ".join(f"{url} ({why})" for url, why in tried.items())
    raise DownloadError(f"could not download {name} from {where}{kept}")


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Checks path against ARCHIVES[path.name].md5; a mismatch deletes the file (a broken download) and says so."""
    archive, found = ARCHIVES[path.name], md5sum(path)
    if found != archive.md5:
        size = path.stat().st_size
        path.unlink()
        raise DownloadError(f"{path} has MD5 {found}, expected {archive.md5} ({size} bytes, expected "
                            f"{archive.size}): deleted it; run the command again to download it afresh")


def _check_members(tar: tarfile.TarFile, archive: Path, year: str) -> None:
    """Every member must be a plain file or folder under VOCdevkit/VOC{year}: no links, no absolute or .. paths."""
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        inside = parts[:1] == ("VOCdevkit",) and parts[1:2] in ((), (f"VOC{year}",)) and ".." not in parts
        if not inside or not (member.isfile() or member.isdir()):
            raise ValueError(f"{archive}: unexpected member {member.name!r}; a PASCAL VOC{year} archive holds only "
                             f"files under VOCdevkit/VOC{year}/")


def _move_tree(src: Path, dst: Path) -> None:
    """Moves src to dst: one rename when dst is new; else file by file, ImageSets last, so that an image set
    never lists an image or annotation not yet in place."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    for child in sorted(src.iterdir(), key=lambda p: (p.name == "ImageSets", p.name)):
        if child.is_dir():
            _move_tree(child, dst / child.name)
        else:
            os.replace(child, dst / child.name)


def extract(archives: Sequence[Path], root: Path, year: str) -> Path:
    """Unpacks the archives into root/.extracting-VOC{year}, then moves VOC{year} into root/VOCdevkit.

    Returns root/VOCdevkit/VOC{year}. The temporary folder is removed whatever happens, so a failed or
    interrupted extraction leaves the VOCdevkit as it was.
    """
    tmp = root / f".extracting-VOC{year}"
    shutil.rmtree(tmp, ignore_errors=True)  # left behind by a killed run
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
    try:
        for archive in archives:
            _say(f"extracting {archive}")
            with tarfile.open(archive) as tar:
                _check_members(tar, archive, year)
                tar.extractall(tmp, **safe)
        _move_tree(tmp / "VOCdevkit" / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}")
    except tarfile.TarError as error:
        raise ValueError(f"{archive}: not a readable tar archive ({error})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / "VOCdevkit" / f"VOC{year}"


def download(dataset: str, root: str | Path = "data", timeout: float = TIMEOUT_S) -> Path:
    """Makes root/VOCdevkit/VOC{year} from the official archives, unless a finished one is there (its marker).

    Args:
        dataset: "voc2007" (trainval and test, 911 MB) or "voc2012" (trainval, 2.0 GB).
        root: the folder to fill: root/downloads holds the archives, root/VOCdevkit the extracted tree.
        timeout: seconds per connection attempt and per read.

    Returns:
        root/VOCdevkit/VOC{year}. Raises DownloadError naming the URLs tried and where to put archives
        downloaded by hand, or naming an archive whose MD5 did not match (which it deletes).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    root, (year, names) = Path(root), DATASETS[dataset]
    year_dir, marker = root / "VOCdevkit" / f"VOC{year}", root / "VOCdevkit" / f".frcnn_edu-{dataset}.done"
    if marker.is_file() and year_dir.is_dir():
        _say(f"{year_dir} is already there ({marker} exists; delete it to extract again)")
        return year_dir
    downloads, paths = root / "downloads", []
    for name in names:
        try:
            path = download_archive(name, downloads, timeout)
        except DownloadError as error:
            by_hand = " and ".join(str(downloads / n) for n in names if not (downloads / n).is_file())
            raise DownloadError(f"{error}. Offline? Download the archives by hand and put them at {by_hand}, "
                                f"then run this command again") from None
        verify(path)
        paths.append(path)
    extract(paths, root, year)
    marker.write_text("".join(f"{name} {ARCHIVES[name].md5}\n" for name in names))
    _say(f"{dataset} is ready in {year_dir}; the archives in {downloads} may now be deleted")
    return year_dir


# ---- Subset: a balanced, seeded list of images of a few classes ----

def _year_dir(root: Path, year: str) -> Path:
    """root/VOCdevkit/VOC{year} (root may also be the VOCdevkit folder itself), or a FileNotFoundError."""
    devkit = root / "VOCdevkit" if (root / "VOCdevkit").is_dir() or root.name != "VOCdevkit" else root
    if not devkit.is_dir():
        raise FileNotFoundError(f"{devkit} not found: {_how_to_get(year, root)}")
    year_dir = devkit / f"VOC{year}"
    if not year_dir.is_dir():
        there = ", ".join(sorted(p.name for p in devkit.glob("VOC*") if p.is_dir())) or "none"
        raise FileNotFoundError(f"{year_dir} not found (year folders there: {there}); "
                                f"{_how_to_get(year, devkit.parent)}")
    return year_dir


def _how_to_get(year: str, root: Path) -> str:
    if f"voc{year}" in DATASETS:
        return f"download it with `python -m frcnn_edu.datasets download voc{year} --root {root}`"
    return f"extract VOC{year} there by hand (this tool downloads {', '.join(DATASETS)})"


def _image_ids(year_dir: Path, image_set: str) -> list[str]:
    path = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"image set {path} not found")
    return sorted(set(path.read_text().split()))


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


def subset(root: str | Path, classes: Sequence[str], name: str, max_images: int = 300, max_test: int = 0,
           year: str = "2007", seed: int = 0) -> dict:
    """Writes VOC{year}/ImageSets/Main/{name}_trainval.txt and {name}_test.txt: images of `classes` only.

    Args:
        root: the folder holding VOCdevkit (as for `download`), or the VOCdevkit folder itself.
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
    year_dir = _year_dir(Path(root), str(year))
    trainval = _image_ids(year_dir, "trainval")
    has_test = (year_dir / "ImageSets" / "Main" / "test.txt").is_file()
    test = _image_ids(year_dir, "test") if has_test else []
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

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m frcnn_edu.datasets", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    d = commands.add_parser("download", help="download and extract PASCAL VOC into ROOT/VOCdevkit")
    d.add_argument("dataset", choices=sorted(DATASETS))
    d.add_argument("--root", default="data", help="folder for downloads/ and VOCdevkit/ (default: data)")
    d.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per connection attempt and read")
    s = commands.add_parser("subset", help="write a balanced {name}_trainval.txt / {name}_test.txt of a few classes")
    s.add_argument("--root", default="data", help="the folder holding VOCdevkit, or VOCdevkit itself")
    s.add_argument("--classes", required=True, help="comma-separated VOC class names, e.g. cat,dog")
    s.add_argument("--name", required=True, help="prefix of the two lists, e.g. catdog")
    s.add_argument("--max-images", type=int, default=300, help="trainval images at most (default 300)")
    s.add_argument("--max-test", type=int, default=0, help="test images at most (default: --max-images)")
    s.add_argument("--year", default="2007")
    s.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 download failed (network, checksum), 2 bad input, 130 interrupted."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "download":
            download(args.dataset, args.root, args.timeout)
            return 0
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        result = subset(args.root, classes, args.name, args.max_images, args.max_test, args.year, args.seed)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, permissions: name the path, skip the traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    for split in ("trainval", "test"):
        counts = result["counts"][split]
        print(f"wrote {result[split]}: {len(Path(result[split]).read_text().split())} images "
              f"({', '.join(f'{c} {n}' for c, n in counts.items())})")
    print(f"test images: {result['test_source']}")
    if result["overlap"]:
        print(f"warning: {result['overlap']} test images are also in {result['trainval'].name}")
    year_dir = Path(result["trainval"]).parents[2]
    print(f"train with: python -m frcnn_edu.train --data voc --root {year_dir.parent} --year {args.year} "
          f"--classes {','.join(classes)} --image-set {args.name}_trainval --test-set {args.name}_test")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PASCAL VOC on disk: download the official archives, check them and unpack them into a VOCdevkit folder.

    frcnn-edu download voc2007 --root data       # -> data/VOCdevkit/VOC2007 (trainval + test)
    frcnn-edu download voc2012 --root data       # -> data/VOCdevkit/VOC2012 (trainval)
    python -m frcnn_edu.voc_download voc2007     # the same; without --root into the per-user cache (cache.py)

Stage: the input of Faster R-CNN (arXiv:1506.01497v3 §4: VOC2007 trainval, 5k images, to train and VOC2007 test,
5k images, to evaluate; VOC2012 trainval for "07+12"). The reader is voc.VOCDataset; a class subset to train on
quickly is voc_subset's; README "Real PASCAL VOC".

Each archive comes from the official host, then from its new name (torchvision 0.29's URLs), then from
the usual mirror (pjreddie.com, the same file names), over plain urllib with a short timeout, into
ROOT/downloads/NAME.tar.part; an interrupted download resumes there (HTTP Range). The file is checked against
its MD5 (torchvision/datasets/voc.py's table; a mismatch deletes the file and says so), unpacked into a temporary
folder and only then moved into ROOT/VOCdevkit, so an interrupted run never leaves a half-extracted tree. A
marker file (ROOT/VOCdevkit/.frcnn_edu-voc2007.done) makes a second run a no-op. Offline, put the archives,
downloaded by hand, at ROOT/downloads/NAME.tar: they are used instead of the network.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm.auto import tqdm

from .cache import cache_path
from .exit_status import exit_status

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


def download(dataset: str, root: str | Path | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Makes root/VOCdevkit/VOC{year} from the official archives, unless a finished one is there (its marker).

    Args:
        dataset: "voc2007" (trainval and test, 911 MB) or "voc2012" (trainval, 2.0 GB).
        root: the folder to fill: root/downloads holds the archives, root/VOCdevkit the extracted tree
            (default: cache_path("voc")).
        timeout: seconds per connection attempt and per read.

    Returns:
        root/VOCdevkit/VOC{year}. Raises DownloadError naming the URLs tried and where to put archives
        downloaded by hand, or naming an archive whose MD5 did not match (which it deletes).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    root, (year, names) = Path(root) if root is not None else cache_path("voc"), DATASETS[dataset]
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


# ---- Command line ----

def parser(prog: str = "python -m frcnn_edu.voc_download") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--root", help=f"folder for downloads/ and VOCdevkit/ (default: {cache_path('voc')})")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per connection attempt and read")
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu download`: its errors become exit statuses (exit_status.py) (1 for a failed download)."""
    download(args.dataset, args.root, args.timeout)


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))

"""frcnn_edu.voc_download: offline failure, checksums, resume, extraction, the command's exit status.

No test touches the network: urllib.request.urlopen is replaced by fakes. Archives are tiny tars built in tmp_path
from the real VOC fixture (copied into tmp_path, never into the repository).
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURE, needs_fixture, tree

from frcnn_edu import cli
from frcnn_edu.voc import VOCDataset
from frcnn_edu.voc_download import ARCHIVES, Archive, DownloadError, archive_urls, download

TRAINVAL07, TEST07, TRAINVAL12 = "VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar", "VOCtrainval_11-May-2012.tar"


def make_tar(path: Path, year: str, keep=lambda rel: True) -> bytes:
    """A tar of the fixture's VOC{year} tree as VOCdevkit/VOC{year}/..., the files for which keep(rel) holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for file in sorted((FIXTURE / f"VOC{year}").rglob("*")):
            rel = "VOCdevkit/" + file.relative_to(FIXTURE).as_posix()
            if file.is_file() and keep(rel):
                tar.add(file, arcname=rel)
    return path.read_bytes()


def use_checksums(monkeypatch, contents: dict) -> None:
    """The checksum table says {archive name: bytes}: the MD5 and size of those bytes."""
    for name, data in contents.items():
        monkeypatch.setitem(ARCHIVES, name, Archive(ARCHIVES[name].folder, hashlib.md5(data).hexdigest(), len(data)))


def no_network(monkeypatch) -> list:
    """urlopen fails as it does offline (DNS); returns the list of URLs asked for."""
    asked = []

    def urlopen(request, timeout=None):
        asked.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int, headers: dict):
        super().__init__(data)
        self.status, self.headers = status, headers


def serve(monkeypatch, data: bytes, honour_range: bool = True, down: tuple = ()) -> list:
    """A server of `data` at every URL but those in `down`; returns the (url, Range header) of each request."""
    requests = []

    def urlopen(request, timeout=None):
        requests.append((request.full_url, request.get_header("Range")))
        if request.full_url in down:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        start = int(request.get_header("Range")[len("bytes="):-1]) if request.get_header("Range") else 0
        if start and honour_range:
            headers = {"Content-Length": str(len(data) - start),
                       "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            return FakeResponse(data[start:], 206, headers)
        return FakeResponse(data, 200, {"Content-Length": str(len(data))})

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requests


def leftovers(root: Path) -> list:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".extracting") or p.suffix == ".part")


def test_offline_fails_fast_naming_the_urls_and_the_manual_path(tmp_path, monkeypatch, capsys):
    asked = no_network(monkeypatch)
    root = tmp_path / "data"
    started = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        download("voc2007", root)
    message = str(error.value)
    assert time.perf_counter() - started < 5
    assert asked == archive_urls(TRAINVAL07) and len(asked) == 3  # official host, its new name, the mirror
    assert "\n" not in message and all(url in message for url in asked), message
    assert "host.robots.ox.ac.uk" in message and "pjreddie.com" in message
    assert str(root / "downloads" / TRAINVAL07) in message and str(root / "downloads" / TEST07) in message
    assert not root.exists()  # no empty .part, no downloads/ or VOCdevkit/ folder

    assert cli.main(["download", "voc2007", "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not download") and str(root / "downloads" / TRAINVAL07) in err[-1]
    assert not root.exists()


@needs_fixture
def test_checksum_mismatch_deletes_and_names_the_file(tmp_path, monkeypatch):
    no_network(monkeypatch)
    downloads = tmp_path / "downloads"
    good = make_tar(downloads / TRAINVAL07, "2007", lambda rel: "test.txt" not in rel)
    make_tar(downloads / TEST07, "2007")
    use_checksums(monkeypatch, {TRAINVAL07: good, TEST07: b"another file"})
    with pytest.raises(DownloadError) as error:
        download("voc2007", tmp_path)
    assert str(downloads / TEST07) in str(error.value) and "MD5" in str(error.value) and "deleted" in str(error.value)
    assert not (downloads / TEST07).exists() and (downloads / TRAINVAL07).exists()
    assert not (tmp_path / "VOCdevkit").exists() and not leftovers(tmp_path)


@needs_fixture
@pytest.mark.parametrize("honour_range", [True, False], ids=["range", "server-ignores-range"])
def test_partial_download_resumes(tmp_path, monkeypatch, honour_range):
    data = make_tar(tmp_path / "src" / TRAINVAL12, "2012")
    use_checksums(monkeypatch, {TRAINVAL12: data})
    root, cut = tmp_path / "data", len(data) // 3
    (root / "downloads").mkdir(parents=True)
    # an interrupted earlier run; a server that ignores Range sends it all again, which must replace the part
    (root / "downloads" / f"{TRAINVAL12}.part").write_bytes(data[:cut] if honour_range else b"junk")
    official, new_name, mirror = archive_urls(TRAINVAL12)
    requests = serve(monkeypatch, data, honour_range, down=(official,))

    year_dir = download("voc2012", root)

    start = cut if honour_range else 4
    assert requests == [(official, f"bytes={start}-"), (new_name, f"bytes={start}-")]  # the fallback resumes too
    assert (root / "downloads" / TRAINVAL12).read_bytes() == data
    assert tree(year_dir) == tree(FIXTURE / "VOC2012")
    assert not leftovers(root)


@needs_fixture
def test_local_archives_are_extracted_whole_and_only_once(tmp_path, monkeypatch):
    asked = no_network(monkeypatch)
    downloads = tmp_path / "downloads"
    trainval = make_tar(downloads / TRAINVAL07, "2007", lambda rel: "test.txt" not in rel)
    test = make_tar(downloads / TEST07, "2007", lambda rel: "trainval.txt" not in rel)
    use_checksums(monkeypatch, {TRAINVAL07: trainval, TEST07: test})
    mine = tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "mine_trainval.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("000001\n")  # a tree already there, without the marker: merged into, not replaced

    year_dir = download("voc2007", tmp_path)

    assert asked == []  # the archives put by hand were used; nothing was fetched
    assert year_dir == tmp_path / "VOCdevkit" / "VOC2007"
    assert tree(year_dir) == {**tree(FIXTURE / "VOC2007"), "ImageSets/Main/mine_trainval.txt": b"000001\n"}
    assert (tmp_path / "VOCdevkit" / ".frcnn_edu-voc2007.done").is_file() and not leftovers(tmp_path)
    assert len(VOCDataset(tmp_path / "VOCdevkit", year="2007", image_set="test")) == 5

    shutil.rmtree(downloads)  # a second run only checks the marker
    assert download("voc2007", tmp_path) == year_dir


@needs_fixture
@pytest.mark.parametrize("damage", ["truncated", "foreign-member"])
def test_a_bad_archive_leaves_nothing_extracted(tmp_path, monkeypatch, damage):
    no_network(monkeypatch)
    downloads = tmp_path / "downloads"
    trainval = make_tar(downloads / TRAINVAL07, "2007", lambda rel: "test.txt" not in rel)
    test = make_tar(downloads / TEST07, "2007")
    if damage == "truncated":
        test = test[: len(test) // 2]
    else:
        with tarfile.open(downloads / TEST07, "a") as tar:
            info = tarfile.TarInfo("VOCdevkit/VOC2007/../../evil.txt")
            tar.addfile(info, io.BytesIO(b""))
        test = (downloads / TEST07).read_bytes()
    (downloads / TEST07).write_bytes(test)
    use_checksums(monkeypatch, {TRAINVAL07: trainval, TEST07: test})
    with pytest.raises(ValueError, match=re.escape(str(downloads / TEST07))):
        download("voc2007", tmp_path)
    assert not (tmp_path / "VOCdevkit").exists() and not (tmp_path / "evil.txt").exists()
    assert not leftovers(tmp_path)

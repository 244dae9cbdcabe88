"""frcnn_edu.datasets: download (offline, checksum, resume, extraction) and the class subset tool.

No test touches the network: urllib.request.urlopen is replaced by fakes. Archives are tiny tars built in tmp_path
from the real VOC fixture (../shared/voc-fixture, copied into tmp_path, never into the repository).
"""
from __future__ import annotations

import hashlib
import inspect
import io
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from frcnn_edu import datasets
from frcnn_edu.data import VOCDataset
from frcnn_edu.datasets import ARCHIVES, Archive, DownloadError, archive_urls, download, subset

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("FRCNN_EDU_VOC_FIXTURE", REPO.parent / "shared" / "voc-fixture" / "VOCdevkit"))
needs_fixture = pytest.mark.skipif(not (FIXTURE / "VOC2007").is_dir(), reason=f"VOC fixture not found at {FIXTURE}")
TRAINVAL07, TEST07, TRAINVAL12 = "VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar", "VOCtrainval_11-May-2012.tar"


# ---- helpers: fixture copies, tiny archives, fake servers ----

def copy_fixture(dst: Path) -> Path:
    """A writable copy of the fixture at dst/VOCdevkit (the shared one is read-only)."""
    shutil.copytree(FIXTURE, dst / "VOCdevkit", copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(dst):
        os.chmod(folder, 0o755)
    return dst


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


def tree(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".extracting") or p.suffix == ".part")


# ---- download ----

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

    assert datasets.main(["download", "voc2007", "--root", str(root)]) == 1
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


# ---- subset ----

def write_voc(root: Path, year: str, objects: dict, test: dict | None = None) -> Path:
    """A VOCdevkit with annotations only (the subset tool reads no image): {image_id: [class, ...]}."""
    year_dir = root / "VOCdevkit" / f"VOC{year}"
    (year_dir / "Annotations").mkdir(parents=True)
    (year_dir / "ImageSets" / "Main").mkdir(parents=True)
    for split, images in (("trainval", objects), ("test", test)):
        if images is None:
            continue
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
        for image_id, names in images.items():
            ann = ET.Element("annotation")
            for name in names:
                ET.SubElement(ET.SubElement(ann, "object"), "name").text = name
            ET.ElementTree(ann).write(year_dir / "Annotations" / f"{image_id}.xml")
    return year_dir


def read_list(path: Path) -> list[str]:
    return path.read_text().split()


def test_subset_is_balanced_seeded_and_only_of_the_classes(tmp_path):
    objects = {**{f"d{i:02d}": ["dog"] for i in range(20)}, **{f"c{i}": ["cat", "chair"] for i in range(6)},
               **{f"p{i}": ["person"] for i in range(4)}, **{f"b{i}": ["dog", "cat"] for i in range(3)}}
    test = {f"t{i:02d}": ["cat"] if i < 3 else ["dog"] for i in range(12)}
    year_dir = write_voc(tmp_path, "2007", objects, test)
    result = subset(tmp_path, ["cat", "dog"], "catdog", max_images=10, max_test=4)

    train, held = read_list(result["trainval"]), read_list(result["test"])
    assert result["trainval"] == year_dir / "ImageSets" / "Main" / "catdog_trainval.txt"
    assert train == sorted(train) and len(train) == 10 and not any(i.startswith("p") for i in train)
    # round-robin: 5 turns each; an image with both classes counts for both
    assert 5 <= result["counts"]["trainval"]["cat"] and 5 <= result["counts"]["trainval"]["dog"]
    assert sorted(held) == held and len(held) == 4 and set(held) <= set(test)  # from VOC2007 test
    assert result["counts"]["test"] == {"cat": 2, "dog": 2} and result["test_source"] == "VOC2007 test"

    again = subset(tmp_path, ["cat", "dog"], "catdog2", max_images=10, max_test=4)
    assert read_list(again["trainval"]) == train and read_list(again["test"]) == held  # deterministic
    assert any(read_list(subset(tmp_path, ["cat", "dog"], "s", 10, 4, seed=s)["trainval"]) != train for s in (1, 2, 3))
    many = read_list(subset(tmp_path, ["cat", "dog"], "many", max_images=30)["trainval"])
    assert len(many) == 29 and set(many) >= {f"c{i}" for i in range(6)} | {"b0", "b1", "b2"}  # every cat, dog image


def test_subset_holds_out_test_images_when_there_is_no_test_list(tmp_path):
    objects = {**{f"a{i:02d}": ["aeroplane"] for i in range(12)}, **{f"t{i:02d}": ["train"] for i in range(12)},
               **{f"x{i}": ["sofa"] for i in range(5)}}
    write_voc(tmp_path, "2012", objects)
    result = subset(tmp_path / "VOCdevkit", ["aeroplane", "train"], "planes", max_images=8, max_test=4, year="2012")
    train, held = read_list(result["trainval"]), read_list(result["test"])
    assert len(train) == 8 and len(held) == 4 and not set(train) & set(held) and result["overlap"] == 0
    assert result["counts"] == {"trainval": {"aeroplane": 4, "train": 4}, "test": {"aeroplane": 2, "train": 2}}
    assert "held out" in result["test_source"] and "test.txt" in result["test_source"]


@needs_fixture
def test_subset_of_the_fixture_writes_two_lists_and_nothing_else(tmp_path, capsys):
    root = copy_fixture(tmp_path)
    main = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    before = tree(root)
    assert datasets.main(["subset", "--root", str(root), "--classes", "car,chair", "--max-images", "2",
                          "--name", "cc"]) == 0
    after = tree(root)
    assert set(after) - set(before) == {"VOCdevkit/VOC2007/ImageSets/Main/cc_trainval.txt",
                                        "VOCdevkit/VOC2007/ImageSets/Main/cc_test.txt"}
    assert all(after[k] == v for k, v in before.items())  # no annotation or list changed
    train = read_list(main / "cc_trainval.txt")  # car: 000004; chair: 000003 or 000005; never 000001, 000002
    assert len(train) == 2 and "000004" in train and len({"000003", "000005"} & set(train)) == 1
    out = capsys.readouterr().out
    assert "cc_trainval.txt: 2 images (car 1, chair 1)" in out and "--image-set cc_trainval" in out

    (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "test.txt").unlink()  # as in the real VOC2012
    result = subset(root, ["aeroplane", "person"], "ap", year="2012")  # 2007_000027, 032, 033 qualify
    assert sorted(read_list(result["trainval"]) + read_list(result["test"])) == \
        ["2007_000027", "2007_000032", "2007_000033"]
    assert len(read_list(result["test"])) == 1 and "held out" in result["test_source"]


@needs_fixture
def test_subset_is_readable_by_voc_dataset_with_its_classes(tmp_path):
    root = copy_fixture(tmp_path)
    subset(root, ["car", "chair"], "cc", max_images=3)  # 000003 also holds a sofa
    flag = {"skip_other_classes": True} if "skip_other_classes" in inspect.signature(VOCDataset).parameters else {}
    try:
        data = VOCDataset(root / "VOCdevkit", year="2007", image_set="cc_trainval", classes=("car", "chair"), **flag)
    except ValueError as error:
        if not flag and "unknown class" in str(error):
            pytest.xfail(f"data.py cannot read a class subset yet (needs skip_other_classes): {error}")
        raise
    assert data.ids == ["000003", "000004", "000005"]
    assert [sorted(set(a["labels"].tolist())) for a in data.annotations] == [[2], [1], [2]]


@needs_fixture
@pytest.mark.parametrize("argv, culprit", [
    (["--root", "{tmp}/nothere"], "{tmp}/nothere/VOCdevkit not found"),
    (["--year", "2010"], "VOC2010 not found"),
    (["--classes", "car,kat"], "'kat' is not a PASCAL VOC class"),
    (["--classes", "cat"], "empty subset"),
    (["--name", "dog"], "got 'dog'"),
    (["--name", "../x"], "got '../x'"),
    (["--max-images", "0"], "got 0"),
], ids=["no-vocdevkit", "no-year-folder", "unknown-class", "empty", "name-is-a-class", "name-with-slash", "zero"])
def test_subset_errors_are_one_line_with_exit_status_2(tmp_path, capsys, argv, culprit):
    root = copy_fixture(tmp_path / "data")
    base = {"--root": str(root), "--classes": "car,chair", "--name": "cc"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value.format(tmp=tmp_path)
    before = tree(root)
    assert datasets.main(["subset", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and culprit.format(tmp=tmp_path) in err, err
    assert tree(root) == before

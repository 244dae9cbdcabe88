"""frcnn_edu.voc_subset: balanced, seeded class subsets, held-out tests, the command's one-line errors."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import copy_fixture, needs_fixture, tree

from frcnn_edu import cli
from frcnn_edu.voc import VOCDataset
from frcnn_edu.voc_subset import subset


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
    assert cli.main(["subset", "--root", str(root), "--classes", "car,chair", "--max-images", "2",
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
    data = VOCDataset(root / "VOCdevkit", year="2007", image_set="cc_trainval", classes=("car", "chair"),
                      skip_other_classes=True)
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
    assert cli.main(["subset", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and culprit.format(tmp=tmp_path) in err, err
    assert tree(root) == before

"""frcnn_edu.voc: the VOC reader on real VOC files (the shared fixture), its errors, collate."""
import re
import shutil
import xml.etree.ElementTree as ET

import pytest
import torch
from conftest import FIXTURE, needs_fixture

from frcnn_edu.builtin_dataset import BUILTIN_CLASSES
from frcnn_edu.voc import VOC_CLASSES, VOCDataset, collate


# ---- The real VOC fixture (../shared/voc-fixture: ten PASCAL VOC images, never copied into the repo) ----

@needs_fixture
def test_voc2007_counts_and_difficult():
    data = VOCDataset(FIXTURE, year="2007", image_set="trainval")
    assert data.ids == ["000001", "000002", "000003", "000004", "000005"]
    assert sum(len(a["labels"]) for a in data.annotations) == 17
    difficult = [(a["image_id"], VOC_CLASSES[label - 1]) for a in data.annotations
                 for label, d in zip(a["labels"].tolist(), a["difficult"].tolist()) if d]
    assert difficult == [("000005", "chair"), ("000005", "chair")]
    easy = VOCDataset(FIXTURE, year="2007", keep_difficult=False)
    assert sum(len(a["labels"]) for a in easy.annotations) == 15
    assert not any(a["difficult"].any() for a in easy.annotations)


@needs_fixture
def test_voc2012_counts_and_parts_ignored():
    data = VOCDataset(FIXTURE, year="2012")
    # 11 objects (the fixture README's "12" counts one too many); a person's <part>s are not objects.
    assert sum(len(a["labels"]) for a in data.annotations) == 11
    assert not any(a["difficult"].any() for a in data.annotations)
    assert len(data.annotations[data.ids.index("2007_000027")]["labels"]) == 1


@needs_fixture
def test_box_is_the_xml_box_minus_1_at_the_start():
    data = VOCDataset(FIXTURE, year="2007")
    xml = ET.parse(FIXTURE / "VOC2007" / "Annotations" / "000005.xml").getroot()
    raw = [float(xml.find("object/bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
    assert raw == [263, 211, 324, 339]
    _, target = data[data.ids.index("000005")]
    assert target["boxes"][0].tolist() == [raw[0] - 1, raw[1] - 1, raw[2], raw[3]]  # [262, 210, 324, 339]
    assert target["labels"][0].item() == VOC_CLASSES.index("chair") + 1 == 9
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["difficult"].dtype == torch.bool and target["image_id"] == "000005"


@needs_fixture
def test_images_match_their_xml_size():
    data = VOCDataset(FIXTURE, year="2007")
    for i in range(len(data)):
        image, target = data[i]
        xml = ET.parse(FIXTURE / "VOC2007" / "Annotations" / f"{data.ids[i]}.xml").getroot()
        height, width = int(xml.findtext("size/height")), int(xml.findtext("size/width"))
        assert image.shape == (3, height, width) and target["orig_size"] == (height, width)
        assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, :2] < boxes[:, 2:]).all()


@pytest.fixture
def voc_copy(tmp_path):
    """A writable copy of the fixture's VOC2007 folder, to break."""
    if not (FIXTURE / "VOC2007").is_dir():
        pytest.skip(f"VOC fixture not found at {FIXTURE}")
    shutil.copytree(FIXTURE / "VOC2007", tmp_path / "VOCdevkit" / "VOC2007")
    return tmp_path / "VOCdevkit"


def edit_xml(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


def test_malformed_xml_names_the_file(voc_copy):
    xml = voc_copy / "VOC2007" / "Annotations" / "000003.xml"
    xml.write_text(xml.read_text()[:200])
    with pytest.raises(ValueError, match=re.escape(f"{xml}: malformed XML")):
        VOCDataset(voc_copy)


def test_missing_files_name_the_file(voc_copy):
    image = voc_copy / "VOC2007" / "JPEGImages" / "000002.jpg"
    image.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"image {image} not found")):
        VOCDataset(voc_copy)
    xml = voc_copy / "VOC2007" / "Annotations" / "000001.xml"
    xml.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"annotation {xml} not found")):
        VOCDataset(voc_copy)


def test_unknown_class_names_file_index_and_known_classes(voc_copy):
    xml = voc_copy / "VOC2007" / "Annotations" / "000004.xml"
    edit_xml(xml, "<name>car</name>", "<name>spaceship</name>")
    message = f"{xml}, object 0: unknown class 'spaceship'; known classes: aeroplane, bicycle, "
    with pytest.raises(ValueError, match=re.escape(message)):
        VOCDataset(voc_copy)


def test_degenerate_and_missing_coordinates(voc_copy):
    xml = voc_copy / "VOC2007" / "Annotations" / "000005.xml"
    edit_xml(xml, "<xmax>324</xmax>", "<xmax>12</xmax>")
    message = f"{xml}, object 0: degenerate box xmin=263, ymin=211, xmax=12, ymax=339"
    with pytest.raises(ValueError, match=re.escape(message)):
        VOCDataset(voc_copy)
    edit_xml(xml, "<xmax>12</xmax>", "<xmax>big</xmax>")
    with pytest.raises(ValueError, match=re.escape(f"{xml}, object 0: <bndbox/xmax> is 'big', expected a number")):
        VOCDataset(voc_copy)


def test_missing_root_year_and_image_set(voc_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC2012 not found: download PASCAL VOC2012"):
        VOCDataset(voc_copy, year="2012")
    with pytest.raises(FileNotFoundError, match="did you mean root="):
        VOCDataset(voc_copy.parent, year="2007")
    with pytest.raises(FileNotFoundError, match="image set .*val.txt not found; image sets there: test, trainval"):
        VOCDataset(voc_copy, image_set="val")
    (voc_copy / "VOC2007" / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        VOCDataset(voc_copy, image_set="empty")
    with pytest.raises(FileNotFoundError, match=r"frcnn-edu builtin --root .*nowhere"):
        VOCDataset(tmp_path / "nowhere" / "VOCdevkit", year="builtin", classes=BUILTIN_CLASSES)



def test_collate_keeps_lists_of_any_size():
    batch = [(torch.zeros(3, 4, 5), {"image_id": "a"}), (torch.zeros(3, 6, 2), {"image_id": "b"})]
    images, targets = collate(batch)
    assert [im.shape[1:] for im in images] == [(4, 5), (6, 2)] and [t["image_id"] for t in targets] == ["a", "b"]

"""frcnn_edu.data: the VOC reader on real VOC files, the built-in dataset, the flip, collate."""
import importlib.util
import itertools
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from frcnn_edu.data import (BUILTIN_CLASSES, VOC_CLASSES, RandomHorizontalFlip, VOCDataset, collate, hflip,
                            make_builtin_dataset, zoom_crop)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("FRCNN_EDU_VOC_FIXTURE", REPO.parent / "shared" / "voc-fixture" / "VOCdevkit"))
needs_fixture = pytest.mark.skipif(not (FIXTURE / "VOC2007").is_dir(), reason=f"VOC fixture not found at {FIXTURE}")


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
    with pytest.raises(FileNotFoundError, match=r"python datasets/builtin.py --root .*nowhere"):
        VOCDataset(tmp_path / "nowhere" / "VOCdevkit", year="builtin", classes=BUILTIN_CLASSES)


# ---- The built-in dataset ----

def builtin_module():
    spec = importlib.util.spec_from_file_location("builtin_under_test", REPO / "datasets" / "builtin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_builtin(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin")
    return root, make_builtin_dataset(root, seed=0, num_train=40, num_test=10)


def files(voc_root):
    folder = voc_root / "VOCbuiltin"
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_builtin_is_deterministic(small_builtin, tmp_path):
    _, voc_root = small_builtin
    again = make_builtin_dataset(tmp_path / "again", seed=0, num_train=40, num_test=10)
    assert files(again) == files(voc_root)  # same annotations and identical JPEG bytes
    other = files(make_builtin_dataset(tmp_path / "other", seed=1, num_train=40, num_test=10))
    assert other.keys() == files(voc_root).keys()
    changed = [name for name, data in other.items() if data != files(voc_root)[name] and name.suffix == ".jpg"]
    assert len(changed) == 50


def test_builtin_layout_and_reader(small_builtin):
    _, voc_root = small_builtin
    assert voc_root.name == "VOCdevkit"
    train = VOCDataset(voc_root, year="builtin", image_set="trainval", classes=BUILTIN_CLASSES)
    test = VOCDataset(voc_root, year="builtin", image_set="test", classes=BUILTIN_CLASSES)
    assert len(train) == 40 and len(test) == 10 and not set(train.ids) & set(test.ids)
    image, target = test[3]
    assert image.shape == (3, *target["orig_size"]) and target["labels"].min() >= 1
    assert BUILTIN_CLASSES == builtin_module().CLASSES


def test_builtin_boxes_in_promised_ranges(small_builtin):
    _, voc_root = small_builtin
    data = VOCDataset(voc_root, year="builtin", classes=BUILTIN_CLASSES)
    counts = np.zeros(len(BUILTIN_CLASSES) + 1, int)
    for ann in data.annotations:
        (h, w), boxes = ann["orig_size"], ann["boxes"]
        assert 224 <= h <= 288 and 224 <= w <= 288
        assert 1 <= len(boxes) <= 6 and not ann["difficult"].any()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes == boxes.round()).all()  # integer edges: the XML stores them exactly
        sides = boxes[:, 2:] - boxes[:, :2]
        assert (sides >= 16).all() and (sides <= 0.4 * min(h, w)).all(), sides
        ratio = sides[:, 1] / sides[:, 0]  # h / w
        assert (ratio >= 0.45).all() and (ratio <= 2.2).all(), ratio
        for a, b in itertools.combinations(boxes.tolist(), 2):
            iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
            ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
            assert iw * ih / (area(a) + area(b) - iw * ih) <= 0.3
        counts += np.bincount(ann["labels"].numpy(), minlength=len(counts))
    assert counts[0] == 0 and (counts[1:] >= 0.2 * counts.sum()).all(), counts  # each class ~1/3


def test_make_builtin_dataset_is_idempotent(small_builtin, tmp_path):
    root, voc_root = small_builtin
    manifest = voc_root / "VOCbuiltin" / "builtin.json"
    stamp = manifest.stat().st_mtime_ns
    assert make_builtin_dataset(root, seed=0, num_train=40, num_test=10) == voc_root
    assert manifest.stat().st_mtime_ns == stamp  # nothing rewritten
    # A half-written folder (no manifest: it is written last) is made again from scratch.
    half = make_builtin_dataset(tmp_path, seed=0, num_train=3, num_test=1) / "VOCbuiltin"
    (half / "builtin.json").unlink()
    (half / "JPEGImages" / "000001.jpg").unlink()
    make_builtin_dataset(tmp_path, seed=0, num_train=3, num_test=1)
    assert (half / "JPEGImages" / "000001.jpg").is_file() and (half / "builtin.json").is_file()


# ---- Flip and collate ----

def test_flip_hand_computed_and_twice_is_identity():
    image = torch.arange(30.0).reshape(1, 3, 10).repeat(3, 1, 1)  # [3, H=3, W=10]
    target = dict(boxes=torch.tensor([[1.0, 2.0, 4.0, 3.0], [0.0, 0.0, 10.0, 3.0]]), labels=torch.tensor([1, 2]))
    flipped_image, flipped = hflip(image, target)
    # W = 10: [1, 4) -> [10 - 4, 10 - 1) = [6, 9); the full-width box stays [0, 10).
    assert flipped["boxes"].tolist() == [[6.0, 2.0, 9.0, 3.0], [0.0, 0.0, 10.0, 3.0]]
    assert flipped_image[0, 0, 0] == image[0, 0, 9] and flipped["labels"] is target["labels"]
    # The pixels inside a box stay inside it: columns 1..3 hold what columns 6..8 hold after the flip.
    assert torch.equal(image[:, :, 1:4], flipped_image[:, :, 6:9].flip(-1))
    back_image, back = hflip(flipped_image, flipped)
    assert torch.equal(back_image, image) and torch.equal(back["boxes"], target["boxes"])


def test_random_flip_is_reproducible():
    image, target = torch.rand(3, 4, 6), dict(boxes=torch.tensor([[0.0, 0.0, 2.0, 1.0]]))

    def decisions(seed):
        flip = RandomHorizontalFlip(0.5, torch.Generator().manual_seed(seed))
        return [flip(image, target)[1]["boxes"][0, 0].item() == 4.0 for _ in range(32)]

    assert decisions(0) == decisions(0) and 4 < sum(decisions(0)) < 28
    assert decisions(0) != decisions(1)
    assert RandomHorizontalFlip(0.0)(image, target)[0] is image
    assert RandomHorizontalFlip(1.0)(image, target)[1]["boxes"].tolist() == [[4.0, 0.0, 6.0, 1.0]]
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)


def test_collate_keeps_lists_of_any_size():
    batch = [(torch.zeros(3, 4, 5), {"image_id": "a"}), (torch.zeros(3, 6, 2), {"image_id": "b"})]
    images, targets = collate(batch)
    assert [im.shape[1:] for im in images] == [(4, 5), (6, 2)] and [t["image_id"] for t in targets] == ["a", "b"]


@pytest.mark.parametrize("seed", range(20))
def test_zoom_crop_keeps_every_object_whole(seed):
    gen = torch.Generator().manual_seed(seed)
    height, width = 60 + int(torch.randint(60, (), generator=gen)), 60 + int(torch.randint(60, (), generator=gen))
    image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    count = int(torch.randint(0, 4, (), generator=gen))
    corner = torch.rand(count, 2, generator=gen) * torch.tensor([width - 20.0, height - 20.0])
    boxes = torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=gen) * 15], dim=1).floor()
    target = dict(boxes=boxes, labels=torch.ones(count, dtype=torch.int64))
    crop, moved = zoom_crop(image, target, torch.rand(3, generator=gen))
    h, w = crop.shape[-2:]
    assert h >= height // 2 and w >= width // 2  # at most a 2x zoom
    assert (moved["boxes"][:, :2] >= 0).all() and (moved["boxes"][:, 2] <= w).all() and (moved["boxes"][:, 3] <= h).all()
    shift = (boxes - moved["boxes"])[:, :2]
    assert torch.equal(moved["boxes"][:, 2:] - moved["boxes"][:, :2], boxes[:, 2:] - boxes[:, :2])  # sizes kept
    for (x, y), box in zip(shift.long().tolist(), moved["boxes"].long().tolist()):  # the same pixels under each box
        assert torch.equal(crop[:, box[1]:box[3], box[0]:box[2]], image[:, box[1] + y:box[3] + y, box[0] + x:box[2] + x])

"""frcnn_edu.coco: the COCO reader on generated COCO files, its errors, and a round trip of the real VOC fixture."""
import json
import re

import numpy as np
import pytest
import torch
from conftest import FIXTURE, needs_fixture
from PIL import Image

from frcnn_edu.coco import COCODataset, coco_bbox, voc_to_coco
from frcnn_edu.voc import VOCDataset

# Image ids out of order (the reader keeps the JSON's), category ids with gaps and out of order (labels follow
# increasing id: cat=2 -> 1, dog=17 -> 2, zebra=90 -> 3), one crowd region, one image without objects.
IMAGES = [dict(id=7, file_name="a.jpg", height=40, width=60), dict(id=3, file_name="sub/b.png", height=30, width=20),
          dict(id=5, file_name="c.jpg", height=10, width=10)]
CATEGORIES = [dict(id=90, name="zebra"), dict(id=2, name="cat"), dict(id=17, name="dog")]
ANNOTATIONS = [dict(id=1, image_id=7, category_id=17, bbox=[10, 5, 20.5, 15], iscrowd=0),
               dict(id=2, image_id=7, category_id=90, bbox=[0, 0, 60, 40], iscrowd=1),
               dict(id=3, image_id=3, category_id=2, bbox=[1.25, 2.5, 3, 4])]  # no iscrowd: not a crowd


def write_coco(tmp_path, images=IMAGES, annotations=ANNOTATIONS, categories=CATEGORIES, **extra):
    """tmp_path/instances.json and tmp_path/images/ with a random image per entry (at its size); returns both."""
    folder = tmp_path / "images"
    for image in images:
        path = folder / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(image["height"], image["width"], 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(path)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories, **extra)))
    return path, folder


def test_boxes_labels_crowd_and_empty_images(tmp_path):
    data = COCODataset(*write_coco(tmp_path))
    assert data.ids == ["7", "3", "5"] and len(data) == 3
    assert data.classes == ("cat", "dog", "zebra") and data.category_ids == (2, 17, 90)
    a, b, c = data.annotations
    # [x, y, w, h] -> (x, y, x + w, y + h): [10, 5, 20.5, 15] -> [10, 5, 30.5, 20]; no +-1 (both continuous)
    assert a["boxes"].tolist() == [[10, 5, 30.5, 20], [0, 0, 60, 40]] and a["labels"].tolist() == [2, 3]
    assert a["difficult"].tolist() == [False, True] and a["orig_size"] == (40, 60) and a["image_id"] == "7"
    assert b["boxes"].tolist() == [[1.25, 2.5, 4.25, 6.5]] and b["labels"].tolist() == [1]
    assert b["difficult"].tolist() == [False]
    assert c["boxes"].shape == (0, 4) and c["labels"].shape == (0,) and c["difficult"].shape == (0,)
    assert (a["boxes"].dtype, a["labels"].dtype, a["difficult"].dtype) == (torch.float32, torch.int64, torch.bool)
    assert c["boxes"].dtype == torch.float32 and c["labels"].dtype == torch.int64


def test_items_are_images_with_cloned_targets(tmp_path):
    data = COCODataset(*write_coco(tmp_path))
    assert data.image_path("3") == tmp_path / "images" / "sub" / "b.png" and data.year_dir == tmp_path / "images"
    image, target = data[1]
    assert image.shape == (3, 30, 20) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert image.equal(torch.from_numpy(np.array(Image.open(data.image_path("3")))).permute(2, 0, 1) / 255)
    target["boxes"] += 1
    assert data.annotations[1]["boxes"].tolist() == [[1.25, 2.5, 4.25, 6.5]]  # the dataset's copy is intact
    assert target.keys() == data.annotations[1].keys() == {"image_id", "boxes", "labels", "difficult", "orig_size"}


def test_transforms_apply_to_items(tmp_path):
    def shift(image, target):
        return image * 0, dict(target, boxes=target["boxes"] + 1)

    image, target = COCODataset(*write_coco(tmp_path), transforms=shift)[1]
    assert image.max() == 0 and target["boxes"].tolist() == [[2.25, 3.5, 5.25, 7.5]]


def test_classes_subset_keeps_their_order_and_leaves_out_other_objects(tmp_path):
    data = COCODataset(*write_coco(tmp_path), classes=["zebra", "cat"])
    assert data.classes == ("zebra", "cat") and data.category_ids == (90, 2)
    a, b, c = data.annotations
    assert a["boxes"].tolist() == [[0, 0, 60, 40]] and a["labels"].tolist() == [1]  # the dog is left out
    assert a["difficult"].tolist() == [True]
    assert b["labels"].tolist() == [2] and c["labels"].shape == (0,)


def test_boxes_are_clamped_to_the_image(tmp_path):
    # COCO has boxes ending a fraction of a pixel past the edge; the 60x40 image keeps them inside.
    annotations = [dict(id=1, image_id=7, category_id=2, bbox=[-0.5, 30, 60.75, 10.25])]
    data = COCODataset(*write_coco(tmp_path, IMAGES[:1], annotations))
    assert data.annotations[0]["boxes"].tolist() == [[0, 30, 60, 40]]


def test_bbox_conversion():
    assert coco_bbox(torch.tensor([10.0, 5.0, 30.5, 20.0])) == [10.0, 5.0, 20.5, 15.0]


# ---- Errors: one line, naming the file and the value ----

def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"COCO annotation file {tmp_path / 'none.json'} not found")):
        COCODataset(tmp_path / "none.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=re.escape(f"{bad}: not valid JSON (Expecting value: line 1 column 13")):
        COCODataset(bad, tmp_path)
    bad.write_text("[]")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: expected a JSON object with keys images, annotations, "
                                                   "categories, got a list")):
        COCODataset(bad, tmp_path)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_key(tmp_path, key):
    path, folder = write_coco(tmp_path)
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(f"{path} has no {key!r} key; a COCO file holds images, annotations, "
                                                   "categories")):
        COCODataset(path, folder)


def test_missing_image_file(tmp_path):
    path, folder = write_coco(tmp_path)
    (folder / "sub" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"image {folder / 'sub' / 'b.png'} not found (listed in "
                                                          f"{path}, image id 3)")):
        COCODataset(path, folder)


def broken(tmp_path, **change):
    """write_coco with annotation 3 (on image 3, a cat) changed."""
    annotations = ANNOTATIONS[:2] + [dict(ANNOTATIONS[2], **change)]
    return write_coco(tmp_path, annotations=annotations)


@pytest.mark.parametrize("change, message", [
    (dict(image_id=4), "annotation id 3: image_id 4 is not in 'images'"),
    (dict(category_id=1), "annotation id 3: category_id 1 is not in 'categories' (ids there: 2, 17, 90)"),
    (dict(bbox=[1, 2, 0, 4]), "annotation id 3: bbox [x, y, w, h] = [1, 2, 0, 4] has a non-positive width or height"),
    (dict(bbox=[1, 2, 3, -4]), "annotation id 3: bbox [x, y, w, h] = [1, 2, 3, -4] has a non-positive width or height"),
    (dict(bbox=[25, 2, 3, 4]), "annotation id 3: bbox [x, y, w, h] = [25, 2, 3, 4] lies outside the 20x30 image"),
    (dict(bbox=[1, 2, 3]), "annotation id 3: bbox is [1, 2, 3], expected [x, y, w, h] numbers"),
])
def test_bad_annotation(tmp_path, change, message):
    path, folder = broken(tmp_path, **change)
    with pytest.raises(ValueError, match=re.escape(f"{path}, {message}")):
        COCODataset(path, folder)


def test_bad_annotation_of_a_left_out_class_still_names_its_image(tmp_path):
    # Leaving a category out skips its boxes, not the check that it belongs to a known image and category.
    path, folder = broken(tmp_path, image_id=4)
    with pytest.raises(ValueError, match=re.escape(f"{path}, annotation id 3: image_id 4 is not in 'images'")):
        COCODataset(path, folder, classes=["dog"])


def test_unknown_class_name(tmp_path):
    path, folder = write_coco(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: no category named 'horse'; categories there: "
                                                   "cat, dog, zebra")):
        COCODataset(path, folder, classes=["cat", "horse"])


def test_missing_fields_and_repeated_image(tmp_path):
    path, folder = write_coco(tmp_path, images=IMAGES + [dict(IMAGES[0], file_name="again.jpg")])
    with pytest.raises(ValueError, match=re.escape(f"{path}, image id 7 is listed twice in 'images'")):
        COCODataset(path, folder)
    path, folder = write_coco(tmp_path, annotations=[{k: v for k, v in ANNOTATIONS[0].items() if k != "bbox"}])
    with pytest.raises(ValueError, match=re.escape(f"{path}, annotation id 1 has no 'bbox'")):
        COCODataset(path, folder)


def test_image_size_differs_from_the_json(tmp_path):
    path, folder = write_coco(tmp_path, images=IMAGES[:1], annotations=[])
    path.write_text(path.read_text().replace('"height": 40', '"height": 41'))
    data = COCODataset(path, folder)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'a.jpg'} is 60x40 (WxH) but {path} says 60x41")):
        data[0]


# ---- Round trip on the real VOC fixture (../shared/voc-fixture, read in place) ----

@needs_fixture
def test_voc_round_trip_gives_the_voc_readers_targets(tmp_path):
    voc = VOCDataset(FIXTURE, year="2007", image_set="test")
    coco = voc_to_coco(voc)
    assert [image["file_name"] for image in coco["images"]] == [f"{i}.jpg" for i in voc.ids]
    assert sum(a["iscrowd"] for a in coco["annotations"]) == 2  # the two difficult chairs of 000005
    path = tmp_path / "voc07_test.json"
    path.write_text(json.dumps(coco))
    data = COCODataset(path, images=FIXTURE / "VOC2007" / "JPEGImages")
    assert data.classes == voc.classes and len(data) == len(voc) == 5
    assert data.ids == [str(i + 1) for i in range(5)]  # COCO ids are integers: VOC ids become 1..N
    for mine, theirs in zip(data.annotations, voc.annotations):
        assert mine["boxes"].equal(theirs["boxes"]) and mine["labels"].equal(theirs["labels"])
        assert mine["difficult"].equal(theirs["difficult"]) and mine["orig_size"] == theirs["orig_size"]
    image, target = data[4]
    assert image.equal(voc[4][0]) and target["boxes"].equal(voc[4][1]["boxes"])

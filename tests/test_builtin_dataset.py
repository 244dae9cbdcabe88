"""frcnn_edu.builtin_dataset: determinism, layout, the promised ranges, idempotence, the command."""
import itertools
import json

import numpy as np
import pytest

from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.voc import VOCDataset


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
    manifest = json.loads((voc_root / "VOCbuiltin" / "builtin.json").read_text())
    assert BUILTIN_CLASSES == tuple(manifest["classes"])  # the names written into the files


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

"""frcnn_edu.detect: `frcnn-edu detect` on generated photos and the VOC fixture's real ones, and its errors."""
import json
from dataclasses import asdict

import pytest
import torch
from conftest import FIXTURE, needs_fixture
from PIL import Image

from frcnn_edu import FasterRCNN, FasterRCNNConfig, cli
from frcnn_edu.checkpoint import save_atomic

CLASSES = ["ellipse", "rectangle", "triangle"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint as train.py writes it (random weights: detections of any class, at low scores)."""
    torch.manual_seed(0)
    model = FasterRCNN(len(CLASSES) + 1, "tiny", FasterRCNNConfig.tiny_cpu(min_size=160, max_size=256))
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    save_atomic(dict(model=model.state_dict(), config=asdict(model.config), num_classes=model.num_classes,
                     backbone="tiny", classes=CLASSES), path)
    return path


def photos(folder, sizes=((120, 200), (300, 90))):
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        pixels = (torch.rand(h, w, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"photo{i}.{'png' if i else 'jpg'}")
    return folder


def test_a_folder_of_photos_gives_drawn_photos_and_coco_results(checkpoint, tmp_path, capsys):
    folder = photos(tmp_path / "mine")
    (folder / "notes.txt").write_text("not a photo: a folder's other files are left alone")
    assert cli.main(["detect", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path / "out"),
                     "--score", "0"]) == 0
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["file_name"] for r in results} == {str(folder / "photo0.jpg"), str(folder / "photo1.png")}
    for r in results:
        x, y, w, h = r["bbox"]  # COCO: xywh in the photo's own pixels
        size = (120, 200) if r["image_id"] == 0 else (300, 90)
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= size[1] + 0.01 and y + h <= size[0] + 0.01
        assert CLASSES[r["category_id"] - 1] == r["category"] and 0 <= r["score"] <= 1
    for name, (h, w) in (("photo0.jpg", (120, 200)), ("photo1.jpg", (300, 90))):
        assert Image.open(tmp_path / "out" / name).size == (w, h)  # drawn at full resolution
    assert f"{len(results)} detections in 2 photos" in capsys.readouterr().out


@needs_fixture
def test_real_voc_photos(checkpoint, tmp_path):
    jpegs = sorted((FIXTURE / "VOC2007" / "JPEGImages").glob("*.jpg"))[:2]
    assert cli.main(["detect", "--checkpoint", str(checkpoint), *map(str, jpegs), "--out", str(tmp_path),
                     "--score", "0.3"]) == 0
    results = json.loads((tmp_path / "detections.json").read_text())
    assert all(r["score"] >= 0.3 for r in results)
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == sorted(p.name for p in jpegs)


@pytest.mark.parametrize("make, culprit", [
    (lambda tmp: [str(tmp / "missing.jpg")], "missing.jpg not found"),
    (lambda tmp: [str((tmp / "fake.jpg").write_text("no") and tmp / "fake.jpg")], "fake.jpg is not an image"),
    (lambda tmp: [str((tmp / "empty").mkdir() or tmp / "empty")], "empty holds no image"),
], ids=["missing", "not-an-image", "empty-folder"])
def test_bad_photos_are_one_line_with_exit_status_2(checkpoint, tmp_path, capsys, make, culprit):
    assert cli.main(["detect", "--checkpoint", str(checkpoint), *make(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and culprit in err, err


def test_a_checkpoint_that_is_not_ours_is_refused(tmp_path, capsys):
    folder = photos(tmp_path / "mine")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert cli.main(["detect", "--checkpoint", str(tmp_path / "other.pt"), str(folder)]) == 2
    assert "is not a frcnn_edu checkpoint" in capsys.readouterr().err

"""selective_search: output format (xyxy float32, orig px, inside the image), determinism, input forms, errors."""
import builtins
import sys

import numpy as np
import pytest
import torch

from frcnn_edu import selective_search as ss_module
from frcnn_edu.selective_search import selective_search

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "ximgproc"):
    pytest.skip("cv2.ximgproc missing (install opencv-contrib-python-headless)", allow_module_level=True)


def _image(height: int = 96, width: int = 128) -> np.ndarray:
    """A small synthetic RGB scene: two flat rectangles and a disc on a gradient, HxWx3 uint8."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    image[10:50, 15:60] = (220, 30, 30)
    image[55:90, 70:120] = (30, 200, 40)
    image[((y - 30) ** 2 + (x - 95) ** 2) < 15**2] = (20, 20, 230)
    return image


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_format_and_inside_image(mode):
    image = _image()
    boxes = selective_search(image, mode=mode)
    assert boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[1] == 4 and boxes.shape[0] > 0
    x1, y1, x2, y2 = boxes.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 128).all() and (y2 <= 96).all()
    assert (x2 > x1).all() and (y2 > y1).all()  # xyxy, positive width: x2 = x + w with w >= 1


def test_xywh_to_xyxy_matches_opencv():
    """x2 = x + w (continuous frame, no -1), against OpenCV's raw (x, y, w, h)."""
    image = _image()
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    search.switchToSelectiveSearchFast()
    raw = search.process()
    boxes = selective_search(image)
    expected = {(x, y, x + w, y + h) for x, y, w, h in raw.tolist()}
    assert {tuple(int(v) for v in b) for b in boxes.tolist()} == expected  # same set, whatever the order


def test_tensor_and_array_inputs_agree():
    image = _image()
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255  # [3, H, W] in [0, 1]
    torch.testing.assert_close(selective_search(tensor), selective_search(image))


def test_deterministic_order_and_max_proposals():
    image = _image()
    first, second = selective_search(image), selective_search(image)
    torch.testing.assert_close(first, second)  # the order too, not only the set (C's rand() is seeded)
    torch.testing.assert_close(selective_search(image, max_proposals=5), first[:5])


def test_quality_gives_more_boxes_than_fast():
    image = _image()
    assert selective_search(image, "quality").shape[0] > selective_search(image, "fast").shape[0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        selective_search(_image(), mode="slow")
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        selective_search(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        selective_search(_image().astype(np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        selective_search([[0, 0, 0]])


def test_missing_ximgproc_names_the_package(monkeypatch):
    """A plain opencv-python has no cv2.ximgproc: the error says what to install and why it may be shadowed."""
    fake_cv2 = type(sys)("cv2")
    fake_cv2.__version__ = "0.0-plain"
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    with pytest.raises(ImportError, match="opencv-contrib-python-headless") as info:
        selective_search(_image())
    assert "shadows" in str(info.value)


def test_missing_opencv_names_the_package(monkeypatch):
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
        ss_module._ximgproc()

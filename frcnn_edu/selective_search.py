"""Selective search (Uijlings et al., IJCV 2013): the region proposals of R-CNN and Fast R-CNN, before the RPN.

R-CNN (Girshick et al. 2014) and Fast R-CNN (arXiv:1504.08083v2) took about 2000 class-agnostic boxes per image
from selective search: an over-segmentation of the image (Felzenszwalb-Huttenlocher graph segmentation) whose
regions are merged greedily by colour, texture, size and fill similarity; every region of the hierarchy gives a
box. It runs on the CPU, and Faster R-CNN (arXiv:1506.01497v3 §1) gives its cost: "Selective Search ... is an
order of magnitude slower, at 2 seconds per image in a CPU implementation" (its "fast" mode), the cost the RPN
removes. Here we call OpenCV's implementation (opencv_contrib's ximgproc module), not a re-implementation.
Notebook: 02_selective_search_and_rcnn.

Takes an image in orig px; returns K boxes [K, 4] float32, xyxy, 0-based continuous orig px (OpenCV gives
(x, y, w, h) in whole pixels, so x2 = x + w, with no -1), inside the image, in OpenCV's order.

Repeatability (both measured on opencv-contrib 5.0, see tests/test_selective_search.py):
- OpenCV orders the boxes by a rank that multiplies each region's level in the hierarchy by C's `rand()`, so
  the set of boxes is fixed but their order (hence "the first 100", and `max_proposals`) changes from call to
  call. We seed C's generator with `srand(seed)` (libc, through ctypes) just before each call, which makes the
  order repeatable. Where libc cannot be loaded the order is OpenCV's unseeded one, and the set still agrees.
- The call runs with `cv2.setNumThreads(1)` (restored afterwards): the boxes do not depend on it, but a
  one-thread timing is repeatable and comparable to the paper's single-CPU "2 s per image".
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import torch
from torch import Tensor

_INSTALL_HINT = (
    "selective search needs OpenCV's contrib modules (cv2.ximgproc): pip install opencv-contrib-python-headless. "
    "If it is installed and this still fails, a plain opencv-python (or opencv-python-headless) installed beside "
    "it shadows the contrib build: pip uninstall opencv-python opencv-python-headless, then reinstall "
    "opencv-contrib-python-headless."
)


def _ximgproc():
    """cv2 and cv2.ximgproc, or an ImportError that says which package to install."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError(f"OpenCV is not installed ({error}). {_INSTALL_HINT}") from error
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(f"cv2 {getattr(cv2, '__version__', '?')} has no ximgproc module. {_INSTALL_HINT}")
    return cv2, cv2.ximgproc


def _seed_c_rand(seed: int) -> None:
    """srand(seed) in the C library OpenCV's rand() draws from; silently nothing where libc cannot be loaded."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.srand(ctypes.c_uint(seed))
    except (OSError, AttributeError):
        pass


def to_uint8_rgb(image: Tensor | np.ndarray) -> np.ndarray:
    """A [3, H, W] float tensor in [0, 1], or an HxWx3 uint8 array (RGB), as an HxWx3 uint8 RGB array."""
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(f"image tensor must be [3, H, W] float in [0, 1], got shape {tuple(image.shape)} "
                             f"dtype {image.dtype}")
        pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(1, 2, 0).contiguous().numpy()  # [3, H, W] -> [H, W, 3]
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image array must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        return image
    raise TypeError(f"image must be a torch.Tensor [3, H, W] or a numpy array HxWx3, got {type(image).__name__}")


def selective_search(image: Tensor | np.ndarray, mode: str = "fast", max_proposals: int | None = None,
                     seed: int = 0) -> Tensor:
    """Selective search boxes for one image (Uijlings et al. 2013, as used by R-CNN and Fast R-CNN), in orig px.

    Args:
        image: [3, H, W] float tensor, RGB in [0, 1], or an HxWx3 uint8 numpy array, RGB; orig px.
        mode: "fast" (the setting R-CNN and Fast R-CNN used, about 2000 boxes per PASCAL image) or "quality"
            (more strategies and scales: about 3-4x the boxes and the time).
        max_proposals: keep the first K boxes in OpenCV's ranked order (None: all of them).
        seed: seeds C's rand(), which orders the boxes (see the module docstring).

    Returns:
        [K, 4] float32, xyxy, 0-based continuous orig px, 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H, on the CPU.
    """
    if mode not in ("fast", "quality"):
        raise ValueError(f"mode must be 'fast' or 'quality', got {mode!r}")
    if max_proposals is not None and (not isinstance(max_proposals, int) or max_proposals < 0):
        raise ValueError(f"max_proposals must be None or an int >= 0, got {max_proposals!r}")
    cv2, ximgproc = _ximgproc()
    rgb = to_uint8_rgb(image)
    search = ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV expects BGR
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        _seed_c_rand(seed)
        rects = search.process()  # [K, 4] int32 (x, y, w, h)
    finally:
        cv2.setNumThreads(threads)
    rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)[:max_proposals]
    boxes = torch.from_numpy(rects.copy())
    boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x1, y1, x2, y2): x2 = x + w, continuous
    return boxes

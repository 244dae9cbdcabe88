"""Image preparation and the way back: normalise, rescale, batch with padding, pad the targets; detections back
to orig px as torchvision's per-image dicts.

FRCNN §3.3 (after Fast §5.2, which found one scale nearly as good as five) rescales every image so its shorter side is 600 px, the longer at most 1000,
single-scale. Boxes follow: `image px` = `orig px` * scale. A batch of different sizes is padded at the bottom
and right to a common size divisible by the stride, so the padded region never shifts real pixels. Notebook:
07_why_resize (the measurement of why a common scale helps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ImageBatch:
    """A padded batch and each image's sizes.

    tensors: [N, 3, H, W] normalised, zero-padded (after normalisation) at the bottom and right.
    image_sizes: N (h, w) of each rescaled image inside the batch, image px (Python ints).
    original_sizes: N (h, w) of each input image, orig px.
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def rescale_factor(height: int, width: int, min_size: int, max_size: int) -> float:
    """Scale so the shorter side is min_size unless the longer side would pass max_size (FRCNN §3.3)."""
    return min(min_size / min(height, width), max_size / max(height, width))


def resize_image(image: Tensor, scale: float) -> Tensor:
    """Bilinear resize of a [3, H, W] image by `scale`, as torchvision's GeneralizedRCNNTransform does.

    Returns:
        [3, floor(H * scale), floor(W * scale)].
    """
    return F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                         align_corners=False)[0]


def batch_images(images: list[Tensor], size_divisible: int) -> Tensor:
    """Zero-pad [3, h, w] images to one [N, 3, H, W] tensor, H and W the largest sizes rounded up."""
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    height = -(-height // size_divisible) * size_divisible  # round up to a multiple
    width = -(-width // size_divisible) * size_divisible
    batch = images[0].new_zeros(len(images), 3, height, width)
    for i, img in enumerate(images):
        batch[i, :, : img.shape[1], : img.shape[2]].copy_(img)
    return batch


def prepare_images(images: list[Tensor], targets: list[dict] | None, min_size: int, max_size: int,
                   size_divisible: int, mean: Tensor, std: Tensor) -> tuple[ImageBatch, list[dict] | None]:
    """Normalise, rescale and batch images; rescale target boxes by the same factors.

    Args:
        images: N [3, h, w] float in [0, 1], orig px, any sizes.
        targets: optional N dicts with boxes [G, 4] xyxy orig px (other keys are passed through).
        mean, std: [3, 1, 1] buffers on the images' device.

    Returns:
        The ImageBatch, and targets with boxes in image px (new dicts; inputs are not modified).
    """
    resized, sizes, originals, new_targets = [], [], [], []
    for i, image in enumerate(images):
        h, w = image.shape[-2:]
        scale = rescale_factor(h, w, min_size, max_size)
        image = resize_image((image - mean) / std, scale)
        resized.append(image)
        sizes.append((image.shape[1], image.shape[2]))
        originals.append((h, w))
        if targets is not None:
            target = dict(targets[i])
            target["boxes"] = scale_boxes(target["boxes"], image.shape[2] / w, image.shape[1] / h)  # -> image px
            new_targets.append(target)
    batch = ImageBatch(batch_images(resized, size_divisible), sizes, originals)
    return batch, (new_targets if targets is not None else None)


def scale_boxes(boxes: Tensor, ratio_w: float, ratio_h: float) -> Tensor:
    """Multiply x by ratio_w and y by ratio_h. Python floats: no host-to-device copy.

    Args:
        boxes: [..., 4] xyxy.

    Returns:
        [..., 4] xyxy in the new frame.
    """
    x = boxes[..., 0::2] * ratio_w
    y = boxes[..., 1::2] * ratio_h
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)  # [..., 2, 2] -> [..., 4]


def boxes_to_original(boxes: Tensor, image_size: tuple[int, int], original_size: tuple[int, int]) -> Tensor:
    """Map boxes from image px (the rescaled input) back to orig px: the first step of the way back.

    Args:
        boxes: [..., 4] xyxy, image px. image_size, original_size: (h, w), Python ints.

    Returns:
        [..., 4] xyxy, orig px.
    """
    return scale_boxes(boxes, original_size[1] / image_size[1], original_size[0] / image_size[0])


def check_metadata(images: object, targets: object, training: bool) -> None:
    """Free checks (types, shapes, dtypes, keys, devices) that read no tensor values. Run on every call."""
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError(f"images must be a non-empty list of [3, H, W] float tensors, got {type(images).__name__}")
    device = None
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{i}] must be a [3, H, W] tensor, got {shape}")
        if not image.is_floating_point():
            raise TypeError(f"images[{i}] must be a float tensor in [0, 1], got dtype {image.dtype}")
        device = device or image.device
        if image.device != device:
            raise ValueError(f"images[{i}] is on {image.device}, images[0] on {device}")
    if training and targets is None:
        raise ValueError("targets are required in training mode (model.train()); call model.eval() to detect")
    if targets is None:
        return
    if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
        raise ValueError(f"targets must be a list of {len(images)} dicts (one per image), got {type(targets).__name__}"
                         f" of length {len(targets) if hasattr(targets, '__len__') else '?'}")
    for i, target in enumerate(targets):
        for key in ("boxes", "labels"):
            if not isinstance(target, dict) or key not in target:
                raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels', missing {key!r}")
        boxes, labels = target["boxes"], target["labels"]
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must have shape [G, 4], got "
                             f"{tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}")
        if not boxes.is_floating_point():
            raise TypeError(f"targets[{i}]['boxes'] must be float, got dtype {boxes.dtype}")
        if not isinstance(labels, Tensor) or labels.shape != (boxes.shape[0],) or labels.dtype != torch.int64:
            raise ValueError(f"targets[{i}]['labels'] must be an int64 tensor of shape [{boxes.shape[0]}], got "
                             f"{(tuple(labels.shape), labels.dtype) if isinstance(labels, Tensor) else labels!r}")
        for key, value in (("boxes", boxes), ("labels", labels)):
            if value.device != device:
                raise ValueError(f"targets[{i}]['{key}'] is on {value.device} but the images are on {device}")


def check_values(targets: list[dict], num_classes: int) -> None:
    """Value checks on the targets: boxes with x2 > x1 and y2 > y1, finite, labels in 1..num_classes-1.

    The whole batch is reduced to one flag first, so this reads the device once (one sync on a GPU) and only
    builds a message when something is wrong. FasterRCNN(check_inputs=False) skips it.
    """
    bad = []
    for target in targets:
        boxes, labels = target["boxes"], target["labels"]
        bad.append(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]) | ~boxes.isfinite().all(1)).any()
                   | ((labels < 1) | (labels >= num_classes)).any())
    if not torch.stack(bad).any():
        return
    for i, target in enumerate(targets):
        for j, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
            if not (box[2] > box[0] and box[3] > box[1]) or not all(map(math.isfinite, box)):
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {box}: expected x2 > x1 and y2 > y1 (xyxy, finite)")
            if not 1 <= label < num_classes:
                raise ValueError(f"targets[{i}]['labels'][{j}] = {label}: expected 1..{num_classes - 1} "
                                 f"(0 is the background, num_classes={num_classes} counts it)")


def pad_targets(targets: list[dict], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Ground truths of all images as fixed-size tensors (G = the largest count, at least 1).

    Returns:
        boxes: [N, G, 4] image px, padding rows = (0, 0, 1, 1) so encoding them stays finite.
        labels: [N, G] int64, padding 0. valid: [N, G] bool.
    """
    most = max(1, max(t["boxes"].shape[0] for t in targets))
    boxes = torch.zeros(len(targets), most, 4, device=device)
    boxes[:, :, 2:] = 1.0  # a fill: torch.tensor([...], device=...) would copy host memory and wait for it on a GPU
    labels = torch.zeros(len(targets), most, dtype=torch.int64, device=device)
    valid = torch.zeros(len(targets), most, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        count = t["boxes"].shape[0]
        boxes[i, :count] = t["boxes"]
        labels[i, :count] = t["labels"]
        valid[i, :count] = True
    return boxes, labels, valid


def boxes_to_original_batch(boxes: Tensor, image_sizes: list[tuple[int, int]],
                            original_sizes: list[tuple[int, int]]) -> Tensor:
    """Fixed-size boxes of a batch from image px back to orig px, image by image (Python scales: no host read).

    Args:
        boxes: [N, D, 4] xyxy, image px. image_sizes, original_sizes: N (h, w) Python ints.

    Returns:
        [N, D, 4] xyxy, orig px.
    """
    return torch.stack([boxes_to_original(b, size, original)
                        for b, size, original in zip(boxes, image_sizes, original_sizes)])


def postprocess(boxes: Tensor, scores: Tensor, labels: Tensor, valid: Tensor) -> list[dict]:
    """Fixed-size detections -> torchvision's ragged per-image dicts: the last step out of the model.

    Args:
        boxes: [N, D, 4] xyxy, orig px. scores: [N, D]. labels: [N, D] int64. valid: [N, D] bool, the valid
            ones first (sorted by score).

    Returns:
        N dicts of boxes [D_i, 4], labels [D_i], scores [D_i]. The one place the count of detections must be
        known on the host: one nonzero per image (a device read). model.detect_padded skips it.
    """
    results = []
    for i in range(boxes.shape[0]):
        keep = valid[i].nonzero().squeeze(1)
        results.append(dict(boxes=boxes[i].index_select(0, keep), labels=labels[i].index_select(0, keep),
                            scores=scores[i].index_select(0, keep)))
    return results

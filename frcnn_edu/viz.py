"""Plots the notebooks share: images, boxes, the pipeline diagram, histograms, the anchor panel.

Every helper draws on a matplotlib Axes it is given (never on pyplot's current figure), names the frame of what
it draws (`orig px`, `image px`, see frcnn_edu/__init__.py) in its axis labels, and returns the artists it
added, so a notebook can restyle them and a test can count them (live controls that redraw them: controls.py).
Text is 8 pt or more. Boxes are xyxy, 0-based continuous: a box (x1, y1, x2, y2) is drawn as
the rectangle from (x1, y1) of width x2 - x1, which on `imshow`'s pixel grid (pixel i spans [i - 0.5, i + 0.5])
is shifted by -0.5 px so that pixel edges line up. No `print`: numbers are returned, not printed.
Notebooks: 01_from_rcnn_to_faster_rcnn (draw_pipeline), 02_selective_search_and_rcnn, 04_anchors (anchor_panel).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib import lines, patches
from matplotlib.axes import Axes
from torch import Tensor

from .anchors import base_anchors, grid_anchors
from .ops import box_iou


def _as_numpy_image(image: Tensor | np.ndarray) -> np.ndarray:
    """[3, H, W] tensor in [0, 1] -> HxWx3 array; numpy HxWx3 (uint8 or float in [0, 1]) or HxW passes through."""
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image tensor must be [3, H, W] (or [1, H, W]), got {tuple(image.shape)}")
        array = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()  # [3, H, W] -> [H, W, 3]
        return array[:, :, 0] if array.shape[2] == 1 else array
    if isinstance(image, np.ndarray) and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        return image
    shape = getattr(image, "shape", None)
    raise ValueError(f"image must be a [3, H, W] tensor or an HxWx3 / HxW array, got {type(image).__name__} "
                     f"of shape {shape}")


def _as_boxes(boxes: Tensor | np.ndarray | Sequence) -> np.ndarray:
    array = boxes.detach().cpu().numpy() if isinstance(boxes, Tensor) else np.asarray(boxes, dtype=np.float64)
    array = array.reshape(-1, 4) if array.size == 0 else array
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4] (xyxy), got {tuple(array.shape)}")
    return array


def show_image(ax: Axes, image: Tensor | np.ndarray, frame: str = "orig px", title: str | None = None):
    """Shows an image with pixel axes labelled by its frame.

    Args:
        ax: the Axes to draw on.
        image: [3, H, W] float tensor, RGB in [0, 1] (the package's images), or an HxWx3 / HxW numpy array.
        frame: the frame of the pixel axes, "orig px" (the file) or "image px" (the rescaled input).
        title: optional title.

    Returns:
        The AxesImage.
    """
    shown = ax.imshow(_as_numpy_image(image))
    ax.set_xlabel(f"x ({frame})")
    ax.set_ylabel(f"y ({frame})")
    if title is not None:
        ax.set_title(title)
    return shown


def draw_boxes(ax: Axes, boxes: Tensor | np.ndarray | Sequence, labels: Tensor | Sequence[int] | None = None,
               scores: Tensor | Sequence[float] | None = None, class_names: Sequence[str] | None = None,
               color: str | Sequence = "yellow", linewidth: float = 1.5, linestyle: str = "-",
               alpha: float = 1.0, fontsize: float = 8) -> list:
    """Draws boxes as rectangles, with an optional caption (class name and score) at each top-left corner.

    Args:
        ax: the Axes, usually showing the image the boxes are in (same frame).
        boxes: [K, 4] xyxy, 0-based continuous px (orig px or image px, as the image shown).
        labels: [K] ints in 1..C (0 is the background); with class_names, shown as class_names[label - 1]
            (the package's class tuples, e.g. builtin_dataset.BUILTIN_CLASSES, hold no background entry).
        scores: [K] floats, shown with 2 decimals.
        color: one matplotlib colour, or K of them.
        linewidth, linestyle, alpha: of the rectangles. fontsize: of the captions.

    Returns:
        The K Rectangles, then the captions (K Text artists when labels or scores are given, none otherwise).
    """
    array = _as_boxes(boxes)
    colors = [color] * len(array) if isinstance(color, str) or color is None else list(color)
    if len(colors) != len(array):
        raise ValueError(f"color must be one colour or {len(array)} (one per box), got {len(colors)}")
    labels = None if labels is None else [int(v) for v in (labels.tolist() if isinstance(labels, Tensor) else labels)]
    scores = None if scores is None else [float(v) for v in (scores.tolist() if isinstance(scores, Tensor) else scores)]
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != len(array):
            raise ValueError(f"{name} must have {len(array)} entries (one per box), got {len(values)}")
    rectangles, captions = [], []
    for k, (x1, y1, x2, y2) in enumerate(array):
        rect = patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colors[k],
                                 linewidth=linewidth, linestyle=linestyle, alpha=alpha)
        rectangles.append(ax.add_patch(rect))
        parts = []
        if labels is not None:
            parts.append(class_names[labels[k] - 1] if class_names is not None else str(labels[k]))
        if scores is not None:
            parts.append(f"{scores[k]:.2f}")
        if parts:
            captions.append(ax.text(x1 - 0.5, y1 - 0.5, " ".join(parts), fontsize=fontsize, color="black",
                                    va="bottom", bbox=dict(facecolor=colors[k], alpha=0.7, pad=1, linewidth=0)))
    return rectangles + captions


# The pipeline diagram (FRCNN Fig. 2): node name -> (centre x, centre y, caption) in data units [0, 11] x [0, 4].
_NODES = {
    "image": (0.8, 3.0, "image\n[N, 3, H, W]"),
    "backbone": (2.7, 3.0, "backbone\n(conv layers)"),
    "features": (4.6, 3.0, "feature map\n[N, C,\nH/16, W/16]\n(shared)"),
    "proposer": (4.6, 1.0, "RPN\n(on the features)"),
    "proposals": (6.5, 1.0, "proposals\n[N, K, 4]"),
    "roi_pool": (6.5, 3.0, "RoI pooling\n[R, C, 7, 7]"),
    "head": (8.4, 3.0, "head (FC)\nclasses, boxes"),
    "detections": (10.3, 3.0, "detections\nboxes, labels,\nscores"),
}
_EDGES_RPN = [("image", "backbone"), ("backbone", "features"), ("features", "roi_pool"), ("features", "proposer"),
              ("proposer", "proposals"), ("proposals", "roi_pool"), ("roi_pool", "head"), ("head", "detections")]


def draw_pipeline(ax: Axes, proposer: str = "rpn", highlight: Sequence[str] = ("features",),
                  title: str | None = None) -> dict:
    """Block diagram of Faster R-CNN (FRCNN Fig. 2), or of Fast R-CNN with proposer="selective_search".

    image -> backbone -> feature map -> RoI pooling -> head -> detections, and the proposals that RoI pooling
    cuts out: from the RPN, which reads the same feature map (Faster R-CNN: one shared network), or from
    selective search on the image, on the CPU (Fast R-CNN).

    Args:
        ax: the Axes to draw on (its axis is turned off: a diagram has no data axes).
        proposer: "rpn" or "selective_search".
        highlight: node names filled in orange: image, backbone, features, proposer, proposals, roi_pool, head,
            detections.
        title: default names the model.

    Returns:
        dict(nodes={name: FancyBboxPatch} (8), arrows=[FancyArrowPatch] (8), texts={name: Text}).
    """
    if proposer not in ("rpn", "selective_search"):
        raise ValueError(f"proposer must be 'rpn' or 'selective_search', got {proposer!r}")
    unknown = set(highlight) - set(_NODES)
    if unknown:
        raise ValueError(f"highlight has unknown nodes {sorted(unknown)}; known: {list(_NODES)}")
    nodes, texts = {}, {}
    half_w, half_h = 0.8, 0.55
    for name, (x, y, caption) in _NODES.items():
        if name == "proposer" and proposer == "selective_search":
            x, caption = 2.7, "selective search\n(CPU, on the\nimage)"
        face = "#ffcc80" if name in highlight else "#e3f2fd"
        box = patches.FancyBboxPatch((x - half_w, y - half_h), 2 * half_w, 2 * half_h,
                                     boxstyle="round,pad=0.05", facecolor=face, edgecolor="#37474f")
        nodes[name] = ax.add_patch(box)
        texts[name] = ax.text(x, y, caption, ha="center", va="center", fontsize=8)
    edges = list(_EDGES_RPN)
    if proposer == "selective_search":
        edges[edges.index(("features", "proposer"))] = ("image", "proposer")
    arrows = []
    for start, end in edges:
        arrow = patches.FancyArrowPatch(posA=_anchor_point(nodes[start], nodes[end]),
                                        posB=_anchor_point(nodes[end], nodes[start]), arrowstyle="-|>",
                                        mutation_scale=10, color="#37474f", linewidth=1.2)
        arrows.append(ax.add_patch(arrow))
    ax.set_xlim(-0.2, 11.3)
    ax.set_ylim(0.2, 3.8)
    ax.set_axis_off()
    default = "Faster R-CNN: the RPN shares the feature map" if proposer == "rpn" else (
        "Fast R-CNN: proposals from selective search")
    ax.set_title(title if title is not None else default)
    return dict(nodes=nodes, arrows=arrows, texts=texts)


def _anchor_point(box: patches.FancyBboxPatch, toward: patches.FancyBboxPatch) -> tuple[float, float]:
    """The midpoint of the side of `box` that faces `toward` (arrows leave and enter at box sides)."""
    x, y, w, h = box.get_x(), box.get_y(), box.get_width(), box.get_height()
    tx, ty = toward.get_x() + toward.get_width() / 2, toward.get_y() + toward.get_height() / 2
    cx, cy = x + w / 2, y + h / 2
    if abs(tx - cx) * h >= abs(ty - cy) * w:  # mostly horizontal: leave by the left or right side
        return (x + w + 0.05, cy) if tx > cx else (x - 0.05, cy)
    return (cx, y + h + 0.05) if ty > cy else (cx, y - 0.05)


def plot_histogram(ax: Axes, values: Tensor | np.ndarray | Sequence[float], bins: int = 20,
                   value_range: tuple[float, float] | None = None, thresholds: Sequence[float] = (),
                   label: str | None = None, color: str | None = None, alpha: float = 0.6,
                   title: str | None = None, xlabel: str | None = None, ylabel: str = "count") -> list:
    """A histogram, with dashed vertical lines at thresholds (e.g. IoU 0.5 and 0.7).

    Call it twice on one Axes to compare two distributions (bars are translucent); pass label for a legend.

    Args:
        values: [V] numbers. bins, value_range: as in numpy.histogram (value_range=(0, 1) for IoU).
        thresholds: x positions of the dashed lines.
        title, xlabel, ylabel: axis texts (None leaves them as they are).

    Returns:
        The `bins` bar Rectangles, then one Line2D per threshold.
    """
    data = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=np.float64)
    _, _, bars = ax.hist(data.reshape(-1), bins=bins, range=value_range, color=color, alpha=alpha, label=label,
                         edgecolor="white", linewidth=0.5)
    lines = [ax.axvline(t, color="black", linestyle="--", linewidth=1) for t in thresholds]
    for t in thresholds:
        ax.text(t, 1.0, f" {t:g}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    if title is not None:
        ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend(fontsize=8)
    return list(bars) + lines


def best_anchor_ious(samples: Sequence[tuple[tuple[int, int], Tensor]], sizes: Sequence[float],
                     ratios: Sequence[float], stride: int = 16) -> Tensor:
    """For each ground-truth box, the IoU of the anchor that fits it best: can any anchor reach it?

    Anchors tile a feature map of ceil(h / stride) x ceil(w / stride) cells, the map of an image padded to a
    multiple of the stride, as the model pads (size_divisible = 16); cross-boundary anchors are included.

    Args:
        samples: (image_size (h, w), boxes [G, 4] xyxy) per image, both in image px (after the model's rescale).
        sizes: anchor sizes, sqrt(area) in image px. ratios: h / w. stride: image px per feature cell.

    Returns:
        [G_total] float32, the best IoU of each box, images in order; recall at t is (out >= t).float().mean().
    """
    cell = base_anchors(tuple(float(s) for s in sizes), tuple(float(r) for r in ratios))  # [A, 4]
    best = []
    for (height, width), boxes in samples:
        anchors = grid_anchors(cell, (math.ceil(height / stride), math.ceil(width / stride)), stride)  # [M, 4]
        if boxes.shape[0]:
            best.append(box_iou(boxes.float(), anchors).amax(dim=1))  # [G, M] -> [G]
    return torch.cat(best) if best else torch.zeros(0)


def anchor_panel(ax: Axes, image: Tensor, boxes: Tensor, sizes: Sequence[float], ratios: Sequence[float],
                 stride: int = 16, samples: Sequence[tuple[tuple[int, int], Tensor]] | None = None,
                 cell: tuple[int, int] | None = None, thresholds: Sequence[float] = (0.5, 0.7)) -> dict:
    """Anchors of one cell over an image, each ground-truth box's best anchor, and the recall they reach.

    Draws the image, the A = len(sizes) * len(ratios) anchors of one feature cell (one colour per size), the
    ground-truth boxes (green) and, dashed red, the best anchor of each; the title gives recall at each
    threshold: the fraction of ground-truth boxes whose best anchor has IoU >= t (measured on `samples`).
    FRCNN §3.1.2 labels an anchor positive at IoU > 0.7 (or as a box's best anchor), so recall at 0.7 is the
    share of objects with a well-fitting anchor before any regression.

    Args:
        ax: the Axes. image: [3, H, W] float in [0, 1], image px (already rescaled as the model does).
        boxes: [G, 4] xyxy, image px: this image's ground truth.
        sizes, ratios, stride: as in anchors.base_anchors / grid_anchors (size = sqrt(area), ratio = h / w).
        samples: (image_size, boxes) pairs in image px over which recall is measured (default: this image).
        cell: (row, column) of the feature cell whose anchors are drawn; default the centre cell.
        thresholds: IoU thresholds for recall.

    Returns:
        dict(best_iou=[G_total] tensor, recall={t: float}, num_anchors=M of this image, cell=(row, column)).
    """
    height, width = image.shape[-2:]
    rows, cols = math.ceil(height / stride), math.ceil(width / stride)
    cell = cell if cell is not None else (rows // 2, cols // 2)
    cell_anchors = base_anchors(tuple(float(s) for s in sizes), tuple(float(r) for r in ratios))  # [A, 4]
    centre = torch.tensor([(cell[1] + 0.5) * stride, (cell[0] + 0.5) * stride]).repeat(2)  # (cx, cy, cx, cy)
    palette = ("tab:blue", "tab:orange", "tab:purple", "tab:cyan", "tab:pink", "tab:olive", "tab:brown")
    colors = [palette[i % len(sizes) % len(palette)] for i in range(len(cell_anchors))]  # ratio-major: by size
    show_image(ax, image, frame="image px")
    draw_boxes(ax, cell_anchors + centre, color=colors, linewidth=1.2)
    ax.plot([centre[0].item() - 0.5], [centre[1].item() - 0.5], "w+", markersize=8)
    draw_boxes(ax, boxes, color="lime", linewidth=2)
    if boxes.shape[0]:
        anchors = grid_anchors(cell_anchors, (rows, cols), stride)  # [M, 4]
        draw_boxes(ax, anchors[box_iou(boxes.float(), anchors).argmax(dim=1)], color="red", linestyle="--")
    samples = samples if samples is not None else [((height, width), boxes)]
    best = best_anchor_ious(samples, sizes, ratios, stride)
    recall = {t: float((best >= t).float().mean()) if len(best) else float("nan") for t in thresholds}
    drawn = torch.cat([cell_anchors + centre, torch.tensor([[0.0, 0.0, width, height]])]) - 0.5  # show it all
    margin = 0.02 * max(height, width)
    ax.set_xlim(drawn[:, 0].min().item() - margin, drawn[:, 2].max().item() + margin)
    ax.set_ylim(drawn[:, 3].max().item() + margin, drawn[:, 1].min().item() - margin)  # y down, as imshow
    handles = [lines.Line2D([], [], color=palette[i % len(palette)], label=f"anchor {s:g} px")
               for i, s in enumerate(sizes)]
    handles += [lines.Line2D([], [], color="lime", linewidth=2, label="ground truth"),
                lines.Line2D([], [], color="red", linestyle="--", label="its best anchor")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # rc sizes: a projector's
    setting = f"sizes {', '.join(f'{v:g}' for v in sizes)} px; ratios h/w {', '.join(f'{v:g}' for v in ratios)}"
    measured = ", ".join(f"recall@{t:g} = {r:.2f}" for t, r in recall.items())
    ax.set_title(f"{setting}; stride {stride} px\n{measured} ({len(best)} boxes)")
    return dict(best_iou=best, recall=recall, num_anchors=rows * cols * len(cell_anchors), cell=cell)


# --- pictures of a training run (frcnn_edu.train writes them into the run folder)
def plot_loss_curves(csv_path, png_path=None, smooth: int = 25):
    """The four losses of a run against the iteration, from its losses.csv (smoothed by a moving average).

    Returns the matplotlib Figure; also saves it to png_path when given.
    """
    import csv

    import matplotlib.pyplot as plt
    import numpy as np

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    if rows:
        iterations = np.array([int(r["iteration"]) for r in rows])
        for name in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
            values = np.array([float(r[name]) for r in rows])
            window = max(1, min(smooth, len(values)))
            smoothed = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(iterations[window - 1 :], smoothed, label=name)
    ax.set(title="Training losses (moving average)", xlabel="iteration", ylabel="loss", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    if png_path is not None:
        fig.savefig(png_path)
        plt.close(fig)
    return fig


def plot_detection_grid(data, detections, class_names, png_path=None, count: int = 8, min_score: float = 0.5):
    """Detections (score >= min_score, coloured by class) and ground truth (white, dashed) on test images.

    Args:
        data: an object with .pixels(i) (uint8 [3, H, W]) and .targets (dicts with boxes, labels), orig px:
            training_data.FromDisk or InMemory.
        detections: model outputs for the same images, orig px.
    """
    import matplotlib.pyplot as plt

    count = min(count, len(detections))
    cols = min(4, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), dpi=80, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, index in zip(axes.flat, range(count)):
        ax.imshow(data.pixels(index).permute(1, 2, 0).numpy())
        for box in data.targets[index]["boxes"].tolist():
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="white", ls="--"))
        det = detections[index]
        for box, label, score in zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist()):
            if score < min_score:
                continue
            color = colors(label % 10)
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec=color, lw=2))
            ax.text(box[0], box[1], f"{class_names[label - 1]} {score:.2f}", color="white", fontsize=8,
                    bbox=dict(fc=color, ec="none", pad=1))
        ax.set_title(f"test image {index}", fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    fig.suptitle(f"Detections (score >= {min_score}) and ground truth (dashed)")
    fig.tight_layout()
    if png_path is not None:
        fig.savefig(png_path)
        plt.close(fig)
    return fig


def draw_detections(image: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor, class_names: Sequence[str]):
    """A photo with its detections drawn at full resolution (for `frcnn-edu detect`), as a PIL image.

    Args:
        image: [3, H, W] float in [0, 1], orig px. boxes: [D, 4] xyxy orig px. labels: [D] in 1..C. scores: [D].
        class_names: C names, label l is class_names[l - 1].
    """
    import matplotlib
    from PIL import Image, ImageDraw

    picture = Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 300))  # lines that stay visible on a large photo
    for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        color = tuple(round(255 * c) for c in matplotlib.colormaps["tab10"](label % 10)[:3])
        draw.rectangle(box, outline=color, width=width)
        caption = f"{class_names[label - 1]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), caption)
        lift = bottom - top + 2  # the caption sits on the box's top edge, inside the photo
        y = box[1] - lift if box[1] >= lift else box[1]
        draw.rectangle((left, y, right + 2, y + lift), fill=color)
        draw.text((box[0] + 1, y), caption, fill="white")
    return picture

"""The built-in dataset: textured shapes on cluttered photo backgrounds, in PASCAL VOC layout, from a seed.

Three classes that differ only by shape: ellipse, rectangle, triangle. Every object gets a random fill
(gradient, stripes or smooth blotches, in random colours) from the same distribution for every class, and is
stretched to its box (h/w from 0.5 to 2, so anchor shapes matter). Backgrounds are crops of scikit-image's
bundled photos (no download) with random distractor lines, scribbles and small blobs that are not objects.
It is small enough for a tiny CNN to learn on a laptop CPU, and a drop-in for VOC2007: same XML, same reader.

Layout, written under ROOT (the manifest last, so a half-written folder is regenerated):
    ROOT/VOCdevkit/VOCbuiltin/JPEGImages/000000.jpg ...      about 256x256 (each side 224..288), quality 90
    ROOT/VOCdevkit/VOCbuiltin/Annotations/000000.xml ...     VOC XML, 1-based inclusive integer boxes
    ROOT/VOCdevkit/VOCbuiltin/ImageSets/Main/trainval.txt    ids 000000..(num_train-1)
    ROOT/VOCdevkit/VOCbuiltin/ImageSets/Main/test.txt        the next num_test ids
    ROOT/VOCdevkit/VOCbuiltin/builtin.json                   manifest: version, seed, sizes, classes

Usage (writes into the per-user cache unless --root names a folder; see frcnn_edu.cache):
    python -m frcnn_edu.builtin_dataset --root data/builtin --seed 0     # or: frcnn-edu builtin --root ...
    python -m frcnn_edu.builtin_dataset --root data/builtin --preview docs/builtin_dataset.png
From Python: make_builtin_dataset("data/builtin") (idempotent), then read it with the VOC reader:
    frcnn_edu.voc.VOCDataset(voc_root, year="builtin", image_set="trainval", classes=BUILTIN_CLASSES)
Its README (what it is, sizes, licences): datasets/README.md in the source checkout.
"""
import argparse
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .cache import cache_path
from .exit_status import exit_status

BUILTIN_CLASSES = ("ellipse", "rectangle", "triangle")  # labels 1, 2, 3
YEAR = "builtin"            # the year folder is VOCdevkit/VOCbuiltin, so VOCDataset(..., year="builtin")
VERSION = 2                 # bump when the drawing changes: an old folder is then regenerated
NUM_TRAIN, NUM_TEST = 500, 200
IMAGE_SIDE = (224, 288)     # width and height each drawn from this range: about 256x256
MIN_SIDE = 16               # box sides from 16 px ...
MAX_SIDE = 0.4              # ... to 40% of the shorter image side
MAX_OBJECTS = 6             # 1..6 objects per image
MAX_IOU = 0.3               # between two objects of an image, so that each stays visible
MIN_CONTRAST = 48           # RGB distance of mean colours, object vs what it covers (0..441): ~10% repainted
# Photos bundled with scikit-image 0.26 that load offline (lily, skin, kidney, ... need pooch downloads), each
# CC0, public domain or "no known copyright restrictions" by its skimage.data docstring ("moon" states none).
# Not "coins" nor "coffee": their coins, cup and saucer are ellipses that no annotation names, and a detector
# rightly finds them (version 1 had them: its top false positives, at score 1.0, were coins).
TEXTURES = ("brick", "grass", "gravel", "rocket", "astronaut", "chelsea", "camera", "hubble_deep_field",
            "immunohistochemistry")


def load_textures() -> list:
    """The background photos as [H, W, 3] uint8 arrays (greyscale ones repeated over 3 channels)."""
    import skimage.data  # imported here: only generation needs it
    photos = [getattr(skimage.data, name)() for name in TEXTURES]
    return [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for p in photos]


def background(rng, textures: list, h: int, w: int) -> np.ndarray:
    """[h, w, 3] float32: a random crop of a random photo, resized, flipped, tinted and re-lit."""
    photo = textures[rng.integers(len(textures))]
    scale = rng.uniform(0.3, 1.0) * min(photo.shape[0] / h, photo.shape[1] / w)  # crop side / output side
    ch, cw = max(int(h * scale), 32), max(int(w * scale), 32)
    y, x = rng.integers(photo.shape[0] - ch + 1), rng.integers(photo.shape[1] - cw + 1)
    crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR)
    img = np.asarray(crop, np.float32)[:, ::-1] if rng.random() < 0.5 else np.asarray(crop, np.float32)
    return img * rng.uniform(0.4, 1.0, size=3) + rng.uniform(0, 80)  # per-channel tint, brightness


def fill(rng, h: int, w: int) -> np.ndarray:
    """[h, w, 3] float32: one object's paint, drawn from the same distribution whatever the class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = xx * np.cos(angle) + yy * np.sin(angle)  # position along a random direction
    kind = rng.integers(3)
    if kind == 0:    # linear gradient
        t = (t - t.min()) / max(t.max() - t.min(), 1.0)
    elif kind == 1:  # stripes, 4..12 px period
        t = (np.sin(2 * np.pi * t / rng.uniform(4, 12)) > 0).astype(np.float32)
    else:            # smooth blotches: a 4x4 random grid upsampled
        grid = Image.fromarray(rng.uniform(0, 255, (4, 4)).astype(np.uint8))
        t = np.asarray(grid.resize((w, h), Image.BILINEAR), np.float32) / 255
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    return c0 + t[..., None] * (c1 - c0) + rng.normal(0, 6, size=(h, w, 3))


def shape_mask(name: str, rng, w: int, h: int) -> np.ndarray:
    """[h, w] bool: the class's shape stretched to a w x h box, touching all four sides."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    if name == "ellipse":
        draw.ellipse([0, 0, w - 1, h - 1], fill=255)  # PIL corners are inclusive pixel indices
    elif name == "rectangle":
        draw.rectangle([0, 0, w - 1, h - 1], fill=255)
    else:  # triangle: apex anywhere along one side, base along the opposite side
        ax, ay = int(rng.integers(w)), int(rng.integers(h))
        corners = [[(ax, 0), (0, h - 1), (w - 1, h - 1)], [(ax, h - 1), (0, 0), (w - 1, 0)],
                   [(0, ay), (w - 1, 0), (w - 1, h - 1)], [(w - 1, ay), (0, 0), (0, h - 1)]]
        draw.polygon(corners[rng.integers(4)], fill=255)
    return np.asarray(mask) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes, 0-based continuous (width = x2 - x1)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])
    return iw * ih / (area(a) + area(b) - iw * ih)


def place_boxes(rng, h: int, w: int) -> list:
    """1..MAX_OBJECTS integer xyxy boxes inside the image, pairwise IoU <= MAX_IOU, largest first."""
    longest = int(MAX_SIDE * min(h, w))
    want, boxes = rng.integers(1, MAX_OBJECTS + 1), []
    for _ in range(50 * MAX_OBJECTS):  # rejection sampling; a crowded image just keeps fewer objects
        ratio = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))  # h / w, log-uniform
        short = rng.uniform(MIN_SIDE, longest / max(ratio, 1 / ratio))
        bw, bh = (round(short), round(short * ratio)) if ratio >= 1 else (round(short / ratio), round(short))
        x, y = rng.integers(w - bw + 1), rng.integers(h - bh + 1)
        box = np.array([x, y, x + bw, y + bh])
        if all(iou(box, other) <= MAX_IOU for other in boxes):
            boxes.append(box)
        if len(boxes) == want:
            break
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))  # small ones are drawn on top


def clutter(rng, image: Image.Image) -> None:
    """Draws 4..11 distractors in place: straight lines, scribbles and blobs smaller than any object."""
    draw, (w, h) = ImageDraw.Draw(image), image.size
    for _ in range(rng.integers(4, 12)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind, start = rng.integers(3), rng.uniform(0, 1, 2) * (w, h)
        if kind == 0:
            end = rng.uniform(0, 1, 2) * (w, h)
            draw.line([tuple(start), tuple(end)], fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:
            points = start + np.cumsum(rng.normal(0, 15, size=(int(rng.integers(3, 8)), 2)), axis=0)
            draw.line([tuple(p) for p in points], fill=colour, width=int(rng.integers(1, 4)))
        else:  # an irregular blob, 4..12 px across (objects are at least MIN_SIDE = 16 px)
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
            radii = rng.uniform(2, 6, len(angles))
            draw.polygon([tuple(start + r * np.array([np.cos(a), np.sin(a)])) for a, r in zip(angles, radii)],
                         fill=colour)


def make_image(rng, textures: list) -> tuple:
    """One image: (PIL RGB image, [(class name, (x1, y1, x2, y2)), ...] 0-based continuous integer boxes)."""
    w, h = (int(s) for s in rng.integers(IMAGE_SIDE[0], IMAGE_SIDE[1] + 1, size=2))
    image = Image.fromarray(np.clip(background(rng, textures, h, w), 0, 255).astype(np.uint8))
    clutter(rng, image)
    pixels, objects = np.asarray(image, np.float32).copy(), []
    for x1, y1, x2, y2 in place_boxes(rng, h, w):
        name = BUILTIN_CLASSES[rng.integers(len(BUILTIN_CLASSES))]
        mask = shape_mask(name, rng, x2 - x1, y2 - y1)
        region = pixels[y1:y2, x1:x2]  # a view: painting it paints the image
        under = region[mask].mean(axis=0)
        for _ in range(20):  # repaint until the object's mean colour stands out from what it covers
            paint = fill(rng, y2 - y1, x2 - x1)[mask]
            if np.linalg.norm(paint.mean(axis=0) - under) >= MIN_CONTRAST:
                break
        region[mask] = paint
        ys, xs = np.nonzero(mask)  # the tight box of the drawn shape (it touches all sides: the box itself)
        objects.append((name, (x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1)))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def write_xml(path: Path, image_id: str, size: tuple, objects: list) -> None:
    """VOC annotation; the 0-based continuous box [x1, x2) is written 1-based inclusive: xmin = x1 + 1, xmax = x2."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = f"VOC{YEAR}"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size_el = ET.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3)):
        ET.SubElement(size_el, tag).text = str(value)
    for name, (x1, y1, x2, y2) in objects:
        obj = ET.SubElement(root, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", 0), ("difficult", 0)):
            ET.SubElement(obj, tag).text = str(value)
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(bndbox, tag).text = str(int(value))
    tree = ET.ElementTree(root)
    ET.indent(tree, "\t")
    tree.write(path, encoding="utf-8")


def manifest(seed: int, num_train: int, num_test: int) -> dict:
    return dict(version=VERSION, seed=seed, num_train=num_train, num_test=num_test, classes=list(BUILTIN_CLASSES))


def is_complete(root, seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> bool:
    """True when ROOT holds a finished dataset made with these arguments (its manifest is written last)."""
    path = Path(root) / "VOCdevkit" / f"VOC{YEAR}" / "builtin.json"
    try:
        return json.loads(path.read_text()) == manifest(seed, num_train, num_test)
    except (OSError, ValueError):
        return False


def generate(root, seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> Path:
    """Writes the dataset under ROOT/VOCdevkit/VOCbuiltin (replacing that folder) and returns ROOT/VOCdevkit.

    Image i of a split depends only on (seed, split, i), so a larger set starts with the same images.
    """
    if seed < 0 or num_train < 1 or num_test < 0:
        raise ValueError(f"need seed >= 0, num_train >= 1, num_test >= 0, got {seed}, {num_train}, {num_test}")
    out = Path(root) / "VOCdevkit" / f"VOC{YEAR}"
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True)
    textures = load_textures()
    for split_code, (split, count, first) in enumerate((("trainval", num_train, 0), ("test", num_test, num_train))):
        ids = [f"{first + i:06d}" for i in range(count)]
        for i, image_id in enumerate(ids):
            image, objects = make_image(np.random.default_rng([seed, split_code, i]), textures)
            image.save(out / "JPEGImages" / f"{image_id}.jpg", quality=90)
            write_xml(out / "Annotations" / f"{image_id}.xml", image_id, image.size, objects)
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (out / "builtin.json").write_text(json.dumps(manifest(seed, num_train, num_test)))
    return out.parent


def preview(root, out_png, count: int = 8) -> None:
    """Saves a 2 x count/2 grid of the first trainval images with their boxes and class names."""
    import io
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    voc = Path(root) / "VOCdevkit" / f"VOC{YEAR}"
    ids = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()[:count]
    fig, axes = plt.subplots(2, (count + 1) // 2, figsize=(2.6 * ((count + 1) // 2), 5.4))
    for ax, image_id in zip(axes.flat, ids):
        image = Image.open(voc / "JPEGImages" / f"{image_id}.jpg")
        ax.imshow(image, extent=(0, image.width, image.height, 0))  # pixel i covers [i, i+1), as our boxes
        for obj in ET.parse(voc / "Annotations" / f"{image_id}.xml").findall("object"):
            name = obj.findtext("name")
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            colour = "C" + str(BUILTIN_CLASSES.index(name))
            ax.add_patch(plt.Rectangle((x1 - 1, y1 - 1), x2 - x1 + 1, y2 - y1 + 1, fill=False, ec=colour, lw=1.5))
            ax.text(x1 - 1, y1 - 2, name, color="white", fontsize=6, bbox=dict(fc=colour, ec="none", pad=1))
        ax.set_title(image_id, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(256).save(out_png, optimize=True)  # palette PNG: a few 100 KB


def make_builtin_dataset(root=None, seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> Path:
    """Makes the built-in dataset under root (unless a finished one with these arguments is there).

    Args:
        root: the folder to write into (default: cache_path("builtin")); the images go to root/VOCdevkit/VOCbuiltin.
        seed: everything is drawn from numpy.random.default_rng((seed, split, index)).
        num_train, num_test: sizes of the trainval and test image sets.

    Returns:
        root/VOCdevkit, for VOCDataset(path, year="builtin", classes=BUILTIN_CLASSES). A folder without its
        manifest (builtin.json, written last) or with other arguments is regenerated from scratch.
    """
    root = Path(root) if root is not None else cache_path("builtin")
    if not is_complete(root, seed, num_train, num_test):
        generate(root, seed, num_train, num_test)
    return root / "VOCdevkit"


def parser(prog: str = "python -m frcnn_edu.builtin_dataset") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--root", help=f"folder to write ROOT/VOCdevkit/VOCbuiltin into (default: {cache_path('builtin')})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=NUM_TRAIN)
    p.add_argument("--num-test", type=int, default=NUM_TEST)
    p.add_argument("--force", action="store_true", help="regenerate even if a finished copy is there")
    p.add_argument("--preview", metavar="PNG", help="also save a grid of 8 trainval images with boxes")
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu builtin`: makes the dataset (and its preview) and says where; errors become exit statuses."""
    root = Path(args.root) if args.root else cache_path("builtin")
    if args.force:
        generate(root, args.seed, args.num_train, args.num_test)
    voc_root = make_builtin_dataset(root, args.seed, args.num_train, args.num_test)
    print(f"built-in dataset ready in {voc_root / ('VOC' + YEAR)}")
    if args.preview:
        preview(root, args.preview)
        print(f"preview written to {args.preview}")


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))

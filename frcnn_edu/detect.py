"""Detection on your own photos: a trained checkpoint run over JPEG/PNG files or folders of them.

    frcnn-edu detect --checkpoint runs/demo/checkpoint.pt photo.jpg more_photos/ --out detections/ --score 0.5

For each photo it writes the photo with its detections drawn (DIR/NAME.jpg) and, for all of them, one COCO
results file (DIR/detections.json: a list of {"file_name", "image_id", "category_id", "category", "bbox"
[x, y, w, h] orig px, "score"}). The checkpoint alone rebuilds the detector: backbone, config, class names
(checkpoint.py, read safely). Photos of any size; each is rescaled by the model as in training.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .cache import cache_path
from .checkpoint import load_checkpoint, model_from_checkpoint
from .exit_status import exit_status
from .viz import draw_detections
from .voc import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(paths: list[str | Path]) -> list[Path]:
    """The photos named, files as given and folders by their JPEG/PNG files (sorted); errors name the path."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise ValueError(f"{path} holds no image ({', '.join(IMAGE_SUFFIXES)} files)")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} not found")
    return found


def read_photo(path: Path) -> torch.Tensor:
    """[3, H, W] float RGB in [0, 1], orig px; ValueError naming the file when it is not an image."""
    try:
        with Image.open(path) as im:
            im.verify()  # reads the header and checks the file: cheap, and a clear error for a non-image
        return load_image(path)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not an image PIL can read ({error})") from None


@torch.no_grad()
def detect(model, photos: list[Path], class_names: list[str], out: Path, score: float = 0.5,
           device: str | torch.device = "cpu") -> list[dict]:
    """Runs the detector on each photo, writes out/NAME.jpg (drawn) and returns the COCO results (score >= score)."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for image_id, path in enumerate(tqdm(photos, desc="detect", unit="photo", disable=None)):
        image = read_photo(path)
        found = model([image.to(device)])[0]
        keep = found["scores"] >= score
        boxes, labels, scores = (found[k][keep].cpu() for k in ("boxes", "labels", "scores"))
        draw_detections(image, boxes, labels, scores, class_names).save(out / f"{path.stem}.jpg", quality=90)
        for (x1, y1, x2, y2), label, value in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            results.append(dict(file_name=str(path), image_id=image_id, category_id=label,
                                category=class_names[label - 1], bbox=[round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                                score=round(value, 4)))
    return results


def parser(prog: str = "python -m frcnn_edu.detect") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("photos", nargs="+", help="JPEG/PNG files, or folders of them")
    p.add_argument("--checkpoint", required=True, help="a run's checkpoint.pt (frcnn-edu train --out RUN)")
    p.add_argument("--out", help=f"folder for the drawn photos and detections.json (default: {cache_path('detect')})")
    p.add_argument("--score", type=float, default=0.5, help="keep detections scoring at least this (default 0.5)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu detect`: errors become one line and an exit status (exit_status.py) (2 for bad input)."""
    if not 0.0 <= args.score <= 1.0:
        raise ValueError(f"--score must be in [0, 1], got {args.score}")
    photos = find_images(args.photos)  # before loading the model: a typo fails at once
    state = load_checkpoint(args.checkpoint, args.device)
    model = model_from_checkpoint(state, args.device)
    out = Path(args.out) if args.out else cache_path("detect")
    results = detect(model, photos, list(state["classes"]), out, args.score, args.device)
    (out / "detections.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"{len(results)} detections in {len(photos)} photos: {out / 'detections.json'} and the drawn photos in {out}")


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))

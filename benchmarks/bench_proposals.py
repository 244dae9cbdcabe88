"""Proposals: selective search against the RPN on the same real photos, in seconds per image and in recall.

    python benchmarks/bench_proposals.py [--quick] [--device cpu|cuda] [--threads T] [--out FILE.md]
                                         [--voc-root DIR] [--checkpoint RUN/checkpoint.pt] [--images 10]

The course point: R-CNN and Fast R-CNN took their ~2000 boxes per image from selective search, which runs on the
CPU outside the network and was Fast R-CNN's bottleneck (FRCNN arXiv:1506.01497v3 §1: "2 seconds per image in a
CPU implementation"; Table 5: 1510 ms against 10 ms for the RPN, on a K40 GPU). The RPN reads the feature map the
detector computes anyway, so its cost is the RPN head and the proposal layer alone.
Photos: the VOC fixture's JPEGs (../shared/voc-fixture/VOCdevkit, or --voc-root) when present, else a few of
scikit-image's bundled photos; each is resized as the detector sees it (shorter side 600, longer <= 1000), and
selective search runs on that same resized image, so both methods see the same pixels. (Fast R-CNN's own script,
selective_search/selective_search_rcnn.m, ran it on the image resized to 500 px wide, then scaled the boxes back:
on VOC's ~500 x 375 photos a smaller image, hence fewer boxes and less time than here.)
Time: selective search (OpenCV, one thread, fast and quality modes) and the RPN with VGG-16 at the paper's
configuration (random weights: the time does not depend on them), measured two ways: marginal (RPN head + anchors
+ proposal layer on the conv5_3 map the detector computes anyway) and whole (rescale + backbone + RPN + proposal
layer, what the RPN costs if nothing were shared: the honest comparison on a CPU, where VGG-16 itself costs
seconds); the tiny backbone at its tiny_cpu configuration is an extra row. Ratios are selective search / RPN,
over the same photos (quality mode, ~3x slower than fast, runs on the first 5 photos only, for time).
Recall: the share of ground-truth boxes (non-difficult) that one of the first N proposals covers at IoU >= 0.5
and >= 0.7, N = 300 and 2000, on the VOC photos (the RPN there needs a VOC-trained --checkpoint) and on the
built-in dataset's test images against the course model's RPN (frcnn_edu.course.course_model).
`--quick`: two small photos, the tiny backbone only, a random tiny RPN and no training (the smoke test in
tests/test_bench_proposals_smoke.py uses it). Notebook 05_region_proposal_network makes the same comparison
on the built-in dataset alone.
"""
from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import benchmark_parser, median_ms, start, write_report  # noqa: E402

from frcnn_edu import FasterRCNN, FasterRCNNConfig  # noqa: E402
from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset  # noqa: E402
from frcnn_edu.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from frcnn_edu.course import course_model  # noqa: E402
from frcnn_edu.ops import box_iou  # noqa: E402
from frcnn_edu.proposals import generate_proposals  # noqa: E402
from frcnn_edu.selective_search import selective_search  # noqa: E402
from frcnn_edu.transform import boxes_to_original, prepare_images, rescale_factor, resize_image  # noqa: E402
from frcnn_edu.voc import VOCDataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("FRCNN_EDU_VOC_FIXTURE", REPO.parent / "shared" / "voc-fixture" / "VOCdevkit"))
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")  # bundled: no download
KS, IOUS = (300, 2000), (0.5, 0.7)
PRE_NMS_FOR_2000 = 12000  # pyfrcnn cfg.TRAIN.RPN_PRE_NMS_TOP_N, the pre-NMS count it pairs with 2000 kept
MODES = ("fast", "quality")


@dataclass
class Photo:
    """One photo: image [3, H, W] float32 in [0, 1], orig px; boxes [G, 4] xyxy orig px (non-difficult) or None."""

    name: str
    image: Tensor
    boxes: Tensor | None


@dataclass
class Settings:
    images: int  # photos for the timing (and VOC recall)
    quality_images: int  # of those, photos for selective search's quality mode (~3x the time of fast)
    builtin_images: int  # built-in test images for the recall
    builtin_quality_images: int  # of those, images for selective search's quality mode
    scale: tuple[int, int]  # (min_size, max_size) of the photos
    rpn_repeats: int  # runs per image of the marginal RPN and the tiny model (median)
    vgg_whole_repeats: int  # runs per image of VGG-16's whole forward (median), after one warm-up each


FULL = Settings(images=10, quality_images=5, builtin_images=20, builtin_quality_images=10, scale=(600, 1000),
                rpn_repeats=5, vgg_whole_repeats=1)  # about 4 minutes on an idle 2-core CPU, one thread
QUICK = Settings(images=2, quality_images=2, builtin_images=2, builtin_quality_images=2, scale=(128, 200),
                 rpn_repeats=1, vgg_whole_repeats=1)


# ---- photos ----

def voc_photos(root: Path, count: int) -> list[Photo]:
    """Up to `count` images of a VOCdevkit, shared between its years, with their non-difficult boxes."""
    years = [p.name[3:] for p in sorted(root.glob("VOC20*")) if p.is_dir()]
    if not years:
        raise FileNotFoundError(f"--voc-root {root}: no VOC2007 or VOC2012 folder inside")
    photos = []
    for year in years:
        main = root / f"VOC{year}" / "ImageSets" / "Main"
        image_set = next((s for s in ("test", "val", "trainval") if (main / f"{s}.txt").is_file()), "trainval")
        dataset = VOCDataset(root, year=year, image_set=image_set, keep_difficult=False)
        for index in range(min(len(dataset), -(-count // len(years)))):
            image, target = dataset[index]
            photos.append(Photo(f"VOC{year}/{target['image_id']}", image, target["boxes"]))
    return photos[:count]


def skimage_photos(count: int) -> list[Photo]:
    """scikit-image's bundled photos (no annotations, so timing only)."""
    import skimage.data

    photos = []
    for name in SKIMAGE_PHOTOS[:count]:
        pixels = getattr(skimage.data, name)()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo_motorcycle: (left, right, disparity)
        image = torch.from_numpy(pixels[..., :3].copy()).permute(2, 0, 1).float() / 255  # [H, W, 3] -> [3, H, W]
        photos.append(Photo(f"skimage.data.{name}", image, None))
    return photos


def resized(image: Tensor, min_size: int, max_size: int) -> Tensor:
    """The image as the detector sees it (FRCNN §3.3 rescale, same call as the model), [3, h, w] in [0, 1]."""
    return resize_image(image, rescale_factor(*image.shape[-2:], min_size, max_size)).clamp(0, 1)


# ---- the RPN, split where the feature map is shared ----

def backbone_stage(model: FasterRCNN, image: Tensor, config: FasterRCNNConfig) -> tuple[Tensor, list]:
    """Rescale, normalise and run the backbone: features [1, C, Hf, Wf] and the image size (h, w) in image px."""
    batch, _ = prepare_images([image], None, config.min_size, config.max_size, config.size_divisible,
                              model.image_mean, model.image_std)
    return model.backbone(batch.tensors), batch.image_sizes


def proposal_stage(model: FasterRCNN, features: Tensor, image_sizes: list, config: FasterRCNNConfig) -> Tensor:
    """RPN head + anchors + proposal layer at test time: [1, K, 4] xyxy image px, invalid rows set to NaN."""
    anchors = model.anchor_generator(tuple(features.shape[-2:])).to(features.dtype)  # [M, 4] image px
    objectness, deltas = model.rpn(features)  # [1, M], [1, M, 4]
    found = generate_proposals(anchors, objectness, deltas, image_sizes, config.rpn_pre_nms_top_n_test,
                               config.rpn_post_nms_top_n_test, config.rpn_nms_thresh, config.rpn_min_size)
    return found.boxes.masked_fill(~found.valid[..., None], float("nan"))


@torch.no_grad()
def rpn_proposals(model: FasterRCNN, image: Tensor, count: int) -> Tensor:
    """The RPN's best `count` proposals after NMS, [K, 4] xyxy orig px (K <= count), by decreasing objectness."""
    config = model.config.replace(rpn_post_nms_top_n_test=count,
                                  rpn_pre_nms_top_n_test=max(model.config.rpn_pre_nms_top_n_test, PRE_NMS_FOR_2000))
    features, sizes = backbone_stage(model, image, config)
    boxes = proposal_stage(model, features, sizes, config)[0].cpu()
    boxes = boxes[~boxes.isnan().any(dim=1)]  # the valid ones come first
    return boxes_to_original(boxes, sizes[0], tuple(image.shape[-2:]))


def trained_model(path: Path, device: torch.device) -> tuple[FasterRCNN, str]:
    """The model of a run folder's checkpoint.pt, as frcnn_edu.train writes it, in eval mode, and its backbone."""
    state = load_checkpoint(path, device)
    return model_from_checkpoint(state, device), state["backbone"]


# ---- timing ----

def time_selective_search(images: list[Tensor], counts: dict[str, int]) -> dict[str, tuple[list, list]]:
    """Per mode, on the first counts[mode] images: seconds per image (one run each: seconds long, and OpenCV's
    order is seeded) and the boxes, [K, 4] xyxy in the px of each image."""
    out = {}
    for mode in MODES:
        seconds, boxes = [], []
        for image in images[: counts[mode]]:
            started = time.perf_counter()
            boxes.append(selective_search(image, mode=mode))
            seconds.append(time.perf_counter() - started)
        out[mode] = (seconds, boxes)
    return out


@torch.no_grad()
def time_rpn(model: FasterRCNN, photos: list[Photo], device: torch.device, repeats: int, whole_repeats: int,
             bf16: bool = False) -> tuple[list[float], list[float]]:
    """Per image: seconds of the marginal RPN (on a computed feature map) and of the whole (from the photo).

    bf16: under bfloat16 autocast, as the trainer runs (AMX or AVX-512 BF16 on recent CPUs, tensor cores on GPUs).
    """
    config, marginal, whole = model.config, [], []
    for photo in photos:
        image = photo.image.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            features, sizes = backbone_stage(model, image, config)
            marginal.append(median_ms(lambda: proposal_stage(model, features, sizes, config), repeats, 1, device) / 1e3)
            whole.append(median_ms(lambda: proposal_stage(model, *backbone_stage(model, image, config), config),
                                   whole_repeats, 1, device) / 1e3)
    return marginal, whole


def mean_size(images: list[Tensor]) -> str:
    """Mean height x width of [3, h, w] images, e.g. "652 x 765"."""
    height, width = (statistics.mean(im.shape[axis] for im in images) for axis in (-2, -1))
    return f"{height:.0f} x {width:.0f}"


def timing_table(photos: list[Photo], images: list[Tensor], ss_seconds: dict[str, list[float]], settings: Settings,
                 device: torch.device, quick: bool) -> tuple[list[str], dict[str, float]]:
    """The time table's lines, and the ratios (selective search fast / RPN) by row name.

    A ratio compares means over the same photos: selective search's quality mode runs on the first few only.
    """
    lines = ["| proposals by | backbone, config | what the time covers | photos | input (image px, mean h x w) | "
             "s per image | SS fast / this | SS quality / this |", "|---|---|---|---:|---|---:|---:|---:|"]

    def row(name, backbone, covers, input_size, seconds):
        ratio = {m: statistics.mean(ss_seconds[m]) / statistics.mean(seconds[: len(ss_seconds[m])]) for m in MODES}
        lines.append(f"| {name} | {backbone} | {covers} | {len(seconds)} | {input_size} | "
                     f"{statistics.mean(seconds):.4f} | {ratio['fast']:.1f}x | {ratio['quality']:.1f}x |")
        print(lines[-1], flush=True)
        return ratio["fast"]

    for mode in MODES:
        row(f"selective search, {mode}", "none (OpenCV, CPU, 1 thread)", "all of it, on the resized image",
            mean_size(images[: len(ss_seconds[mode])]), ss_seconds[mode])
    ratios = {}
    models = [("tiny", FasterRCNNConfig.tiny_cpu(min_size=settings.scale[0], max_size=settings.scale[1]))] if quick \
        else [("vgg16", FasterRCNNConfig.paper_vgg16()), ("tiny", FasterRCNNConfig.tiny_cpu())]
    for (backbone, config), bf16 in itertools.product(models, (False, True)):
        torch.manual_seed(0)
        model = FasterRCNN(21, backbone, config).to(device).eval()
        whole_repeats = settings.vgg_whole_repeats if backbone == "vgg16" else settings.rpn_repeats
        marginal, whole = time_rpn(model, photos, device, settings.rpn_repeats, whole_repeats, bf16)
        input_size = mean_size([resized(p.image, config.min_size, config.max_size) for p in photos])
        label = (f"{backbone}, {'paper_vgg16' if backbone == 'vgg16' else 'tiny_cpu'} "
                 f"(post-NMS top {config.rpn_post_nms_top_n_test}), random weights"
                 + (", bfloat16 autocast" if bf16 else ", float32"))
        for kind, seconds, covers in (
                ("marginal", marginal, "RPN head + anchors + proposal layer, on the shared feature map"),
                ("whole", whole, "rescale + backbone + RPN head + anchors + proposal layer")):
            ratios[f"{backbone} {kind}" + (" bf16" if bf16 else "")] = row(f"RPN, {kind}", label, covers, input_size,
                                                                            seconds)
    return lines, ratios


# ---- recall ----

def recall(proposals: list[Tensor], truths: list[Tensor], count: int, threshold: float) -> float:
    """Share of ground-truth boxes with IoU >= threshold to one of the first `count` proposals of their image."""
    hit = total = 0
    for boxes, gt in zip(proposals, truths):
        total += len(gt)
        if len(gt) and len(boxes):
            hit += int((box_iou(gt, boxes[:count]).amax(dim=1) >= threshold).sum())
    return hit / max(total, 1)


def recall_row(data: str, method: str, proposals: list[Tensor], truths: list[Tensor]) -> str:
    returned = statistics.mean(len(b) for b in proposals)
    note = f" (fewer than {max(KS)})" if returned < max(KS) else ""
    cells = " | ".join(f"{recall(proposals, truths, k, t):.3f}" for k in KS for t in IOUS)
    line = (f"| {data} | {method} | {len(truths)} | {sum(len(g) for g in truths)} | {returned:.0f}{note} | {cells} |")
    print(line, flush=True)
    return line


def to_original(boxes: list[Tensor], images: list[Tensor], photos: list[Photo]) -> list[Tensor]:
    """Boxes found on the resized images, mapped back to orig px (the frame of the ground truth)."""
    return [boxes_to_original(b, tuple(im.shape[-2:]), tuple(p.image.shape[-2:]))
            for b, im, p in zip(boxes, images, photos)]


def builtin_recall(settings: Settings, device: torch.device, quick: bool, scratch: Path) -> tuple[list[str], str]:
    """Recall rows on the built-in test images: selective search against the course model's RPN."""
    if quick:  # two test images in a scratch folder (image i of a split depends only on the seed), no training
        root = make_builtin_dataset(scratch / "builtin", seed=0, num_train=1, num_test=settings.builtin_images)
        config = FasterRCNNConfig.tiny_cpu(min_size=settings.scale[0], max_size=settings.scale[1])
        torch.manual_seed(0)
        models = [("RPN, tiny, random weights (--quick: no training, recall means nothing)",
                   FasterRCNN(len(BUILTIN_CLASSES) + 1, "tiny", config))]
        where = f"{settings.builtin_images} test images generated into a scratch folder"
    else:
        started = time.perf_counter()
        trained, args = course_model()  # trains into the cache's course/ the first time (minutes), then loads it
        seconds = time.perf_counter() - started
        root, config = make_builtin_dataset(args.root, seed=0), trained.config
        torch.manual_seed(0)
        untrained = FasterRCNN(len(BUILTIN_CLASSES) + 1, "tiny", config)
        models = [("RPN, tiny, course model (course.course_model)", trained),
                  ("RPN, tiny, random weights (what training bought)", untrained)]
        where = (f"the first {settings.builtin_images} test images of {args.root} (course model ready in "
                 f"{seconds:.0f} s{': trained now' if seconds > 60 else ''})")
    dataset = VOCDataset(root, year="builtin", image_set="test", classes=BUILTIN_CLASSES)
    photos = [Photo(t["image_id"], im, t["boxes"]) for im, t in (dataset[i] for i in range(settings.builtin_images))]
    images = [resized(p.image, config.min_size, config.max_size) for p in photos]
    truths = [p.boxes for p in photos]
    lines = []
    counts = dict(fast=len(images), quality=settings.builtin_quality_images)
    for mode, (_, boxes) in time_selective_search(images, counts).items():
        lines.append(recall_row("built-in", f"selective search, {mode}", to_original(boxes, images, photos),
                                truths[: len(boxes)]))
    for name, model in models:
        model = model.to(device).eval()
        lines.append(recall_row("built-in", name, [rpn_proposals(model, p.image.to(device), max(KS)) for p in photos],
                                truths))
    note = (f"- built-in: {where}; selective search on each image resized as the tiny model sees it (shorter side "
            f"{config.min_size}), its first N boxes in its own (seeded) order")
    return lines, note


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "two small photos, tiny backbone, no training (a smoke test)")
    parser.add_argument("--voc-root", type=Path, default=None, help=f"a VOCdevkit folder (default: {FIXTURE} if there)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a VOC-trained run's checkpoint.pt: its RPN joins the recall table on the VOC photos")
    parser.add_argument("--images", type=int, default=None, help="photos to use (default 10; --quick 2)")
    args, device, info = start(parser, argv)
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    if args.images is not None:
        settings = replace(settings, images=args.images)
    voc_root = args.voc_root or (FIXTURE if FIXTURE.is_dir() else None)
    if args.voc_root is not None and not args.voc_root.is_dir():
        parser.error(f"--voc-root {args.voc_root} is not a folder")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} not found; train one with `python -m frcnn_edu.train --data voc "
                     f"--root data/VOCdevkit --out runs/voc` and pass runs/voc/checkpoint.pt")
    photos = voc_photos(voc_root, settings.images) if voc_root is not None else skimage_photos(settings.images)
    source = (f"{len(photos)} PASCAL VOC photos from {voc_root} ({', '.join(p.name for p in photos)})" if voc_root
              else f"{len(photos)} scikit-image photos ({', '.join(p.name for p in photos)}); no VOC fixture at "
                   f"{FIXTURE}, so no recall on real photos")
    min_size, max_size = settings.scale
    images = [resized(p.image, min_size, max_size) for p in photos]
    ss = time_selective_search(images, dict(fast=len(images), quality=min(settings.quality_images, len(images))))
    time_lines, ratios = timing_table(photos, images, {m: ss[m][0] for m in MODES}, settings, device, args.quick)

    recall_lines = ["| data | proposals by | images | objects | proposals returned (mean) | "
                    + " | ".join(f"recall@{k} IoU {t:g}" for k in KS for t in IOUS) + " |",
                    "|---|---|---:|---:|---:|" + "---:|" * (len(KS) * len(IOUS))]
    notes = []
    if voc_root is None:
        notes.append(f"- VOC photos: none (no VOC fixture at {FIXTURE}, no --voc-root), so no recall on real photos"
                     + (f"; --checkpoint {args.checkpoint} unused" if args.checkpoint is not None else ""))
    else:
        truths = [p.boxes for p in photos]
        for mode in MODES:
            recall_lines.append(recall_row("VOC photos", f"selective search, {mode}",
                                           to_original(ss[mode][1], images, photos), truths[: len(ss[mode][1])]))
        if args.checkpoint is not None:
            model, backbone = trained_model(args.checkpoint, device)
            name = f"RPN, {backbone}, trained ({args.checkpoint})"
            recall_lines.append(recall_row("VOC photos", name,
                                           [rpn_proposals(model, p.image.to(device), max(KS)) for p in photos], truths))
        else:
            notes.append("- VOC photos, RPN: no row. A meaningful RPN needs VOC-trained weights: pass --checkpoint "
                         "RUN/checkpoint.pt from `python -m frcnn_edu.train --data voc ...`; pretrained weights cannot "
                         "be downloaded here, and a random VGG-16 RPN's recall would mean nothing.")
    with tempfile.TemporaryDirectory() as scratch:
        rows, note = builtin_recall(settings, device, args.quick, Path(scratch))
    recall_lines += rows
    notes.insert(0, note)

    key = "vgg16" if "vgg16 marginal" in ratios else "tiny"
    met = lambda ratio: f"{ratio:.1f}x ({'met' if ratio >= 100 else 'not met'})"
    verdict = (f"- target, RPN proposals >= 100x faster than selective search (fast) per image on this CPU: "
               f"{'VGG-16' if key == 'vgg16' else 'tiny (--quick)'} marginal {met(ratios[f'{key} marginal'])}, "
               f"whole {met(ratios[f'{key} whole'])}; under bfloat16 autocast: marginal "
               f"{met(ratios[f'{key} marginal bf16'])}, whole {met(ratios[f'{key} whole bf16'])}")
    title = "# Proposals: selective search vs the RPN" + (" (--quick: tiny sizes, not a measurement)"
                                                         if args.quick else "")
    text = "\n".join([
        title, "", *info,
        f"- photos: {source}; each resized as the detector sees it (shorter side {min_size}, longer <= {max_size}), "
        "and selective search runs on that same resized image (Fast R-CNN ran it at 500 px wide: fewer, faster boxes)",
        f"- seconds per image: mean over the photos (selective search's quality mode: the first "
        f"{min(settings.quality_images, len(photos))} only, for time); selective search one run per image, the RPN "
        f"the median of {settings.rpn_repeats} runs per image after a warm-up (VGG-16 whole: "
        f"{settings.vgg_whole_repeats}), eval mode, torch.no_grad; ratio = selective search's mean seconds / this "
        "row's over the same photos",
        f"- wall time of this benchmark: {time.perf_counter() - started:.0f} s", "",
        "## Time per image", "", *time_lines, "",
        "- marginal: the work the detector adds to get proposals, given the feature map it computes anyway; whole: "
        "the RPN as a stand-alone proposal method, paying for the backbone too"
        + ("" if args.quick else ". The tiny rows run at tiny_cpu's scale (their input column), selective search "
           "at the photos' scale"),
        verdict, "",
        "## Recall of ground-truth boxes", "",
        f"- recall@N IoU t: share of the ground-truth boxes (non-difficult) that one of the first N proposals of "
        f"their image covers at IoU >= t; computed in orig px (every proposal mapped back by its image's resize "
        f"factors). The RPN's list: post-NMS top {max(KS)} (pre-NMS >= {PRE_NMS_FOR_2000}), its first 300 for N = "
        f"300; where a method returns fewer than N, all of its boxes count", *notes, "",
        *recall_lines, ""])
    print(verdict, flush=True)
    return write_report(text, args.out)


if __name__ == "__main__":
    main()

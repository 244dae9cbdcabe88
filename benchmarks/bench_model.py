"""Time frcnn_edu.FasterRCNN against torchvision's FasterRCNN doing the same work, and count host round-trips.

    python benchmarks/bench_model.py [--quick] [--device cpu|cuda] [--threads T] [--out benchmarks/RESULTS_model.md]

Both models share the same modules and weights (frcnn_edu.twin.torchvision_twin) and the same configuration:
the paper's scale (one 600 x 1000 image), anchors and top-N, with our deliberate differences switched to
torchvision's behaviour so both do the same work (cross-boundary anchors used, background IoU from 0).
For the tiny and VGG-16 backbones (RoI pooling) it reports the median time of a training step (forward and
backward) and of an inference, the ratio ours / torchvision's, and the host round-trips per step: Python-level
reads (.item(), .tolist(), ...) and hidden ones below Python (nonzero, boolean-mask indexing, ...).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import benchmark_parser, median_ms, start  # noqa: E402

from frcnn_edu import FasterRCNN, FasterRCNNConfig  # noqa: E402
from frcnn_edu.syncs import HiddenSyncCounter, count_python_reads  # noqa: E402
from frcnn_edu.twin import torchvision_twin  # noqa: E402


def same_work_config(size: tuple[int, int]) -> FasterRCNNConfig:
    """The paper's configuration at this image size, with torchvision's behaviour where ours differs."""
    return FasterRCNNConfig.paper_vgg16(min_size=min(size), max_size=max(size), rpn_min_size=1e-3,
                                        rpn_ignore_cross_boundary=False, roi_bg_iou_thresh_lo=0.0,
                                        representation_size=1024)


def inputs(size: tuple[int, int], device: torch.device, batch: int = 1):
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, *size, generator=gen).to(device) for _ in range(batch)]
    boxes = torch.tensor([[50.0, 60, 300, 400], [400, 100, 700, 380], [600, 300, 950, 580]])
    targets = [dict(boxes=boxes.to(device), labels=torch.tensor([1, 2, 1], device=device)) for _ in range(batch)]
    return images, targets


def train_step(model, images, targets):
    def step():
        losses = model(images, targets)
        sum(losses.values()).backward()
    return step


def inference(model, images):
    def run():
        with torch.no_grad():
            model(images)
    return run


def round_trips(fn) -> tuple[int, int]:
    """(Python-level reads, hidden syncs) during one call of fn."""
    with count_python_reads() as reads, HiddenSyncCounter() as hidden:
        fn()
    return len(reads), hidden.count


def measure(backbone: str, size: tuple[int, int], device: torch.device, repeats: int) -> list[str]:
    torch.manual_seed(0)
    ours = FasterRCNN(3, backbone, same_work_config(size), check_inputs=False).to(device)
    theirs = torchvision_twin(ours)
    images, targets = inputs(size, device)
    rows = []
    for mode in ("train step", "inference"):
        for model in (ours, theirs):
            model.train(mode == "train step")
        make = (lambda m: train_step(m, images, targets)) if mode == "train step" else (lambda m: inference(m, images))
        ours_ms = median_ms(make(ours), repeats, 1, device)
        theirs_ms = median_ms(make(theirs), repeats, 1, device)
        (ours_py, ours_hidden), (tv_py, tv_hidden) = round_trips(make(ours)), round_trips(make(theirs))
        rows.append(f"| {backbone} | {mode} | {size[0]}x{size[1]} | {ours_ms:.0f} | {theirs_ms:.0f} | "
                    f"{ours_ms / theirs_ms:.2f} | {ours_py} + {ours_hidden} | {tv_py} + {tv_hidden} |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "a small image, one repeat (a smoke test)")
    parser.add_argument("--backbones", default="tiny,vgg16")
    args, device, info = start(parser, argv)
    size, repeats = ((128, 160), 1) if args.quick else ((600, 1000), 3)
    table = ["| backbone | mode | image | frcnn_edu ms | torchvision ms | ratio (ours / tv) | "
             "round-trips ours (python + hidden) | torchvision |", "|---|---|---|---:|---:|---:|---|---|"]
    for backbone in args.backbones.split(","):
        table += measure(backbone, size, device, repeats)
    title = "# frcnn_edu.FasterRCNN vs torchvision's FasterRCNN" + (" (--quick: not a measurement)" if args.quick else "")
    text = "\n".join([title, "", *info, f"- median of {repeats} repeats after 1 warm-up call; batch of 1 image", "",
                      *table, ""])
    if args.out is not None:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()

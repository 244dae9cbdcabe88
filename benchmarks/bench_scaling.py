"""How frcnn_edu.FasterRCNN's step time and memory grow with the image size and the number of proposals.

    python benchmarks/bench_scaling.py [--quick] [--device cpu|cuda] [--threads T] [--out benchmarks/results/scaling.md]
                                       [--png benchmarks/scaling.png] [--backbone tiny|vgg16]

Two scans of the same model as bench_model.py (the paper's configuration, our differences switched to
torchvision's behaviour, one image), each point timed for a training step and an inference, ours against
torchvision's twin (same weights, frcnn_edu.instruments.twin) for the ratio, with the peak memory of one step above the model
and inputs (CUDA: max_memory_allocated; CPU: peak RSS, each case in a fresh process, as bench_model.py explains).
1. Image size: shorter side 300, 400, 600, 800, 1000 px, longer side 5/3 of it (600 x 1000 is the paper's scale).
   Anchors, and so the RPN's work, grow with the area; the proposal counts stay the paper's (2000 / 300 kept).
2. Proposals kept after NMS, N = 300 .. 6000 (the paper trains with 2000 and tests with 300), at 600 x 1000, for
   training and inference alike, from a fixed pre-NMS top 12000 (the paper's training value). Our NMS
   (frcnn_edu.ops.first_kept) settles the boxes block by block, and each block meets the first N boxes kept
   before it, so its pairs grow with N (12000 x (N + block)); torchvision's C++ NMS runs over all 12000 boxes
   (each survivor against the boxes after it), then keeps the first N, so its cost hardly depends on N. With
   random weights the proposals are nearly the anchors, which overlap their neighbours so much that NMS at the
   paper's IoU 0.7 keeps fewer than 3000 of 12000; this scan uses IoU 0.9, so N really varies (torchvision's
   NMS, suppressing less, costs more there than at 0.7), and the table gives the count our model actually kept
   (the mean over the batch).
Writes a markdown table (--out) and a PNG (--png): time and memory against image size and against N.
`--quick`: two tiny images and two small N, one repeat, memory cases in one process (the smoke test).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import (MODES, QUICK_TOP_N, build, inputs, measure_memory, memory_text,  # noqa: E402
                         same_work_config, step_fn)
from bench_ops import benchmark_parser, median_ms, start, write_report  # noqa: E402

SCAN_NMS_THRESH = 0.9  # see the docstring: at 0.7 random-weight proposals cannot reach N = 6000


@dataclass
class Grid:
    sides: tuple[int, ...]  # shorter image side, px; the longer side is 5/3 of it
    proposals: tuple[int, ...]  # N kept after NMS, train and test
    proposal_image: tuple[int, int]  # the image of the proposal scan
    pre_nms: int  # pre-NMS top-N of the proposal scan, >= every N
    size_overrides: dict  # config changes for the size scan (none: the paper's top-N)
    repeats: int = 3
    warmup: int = 1


FULL = Grid(sides=(300, 400, 600, 800, 1000), proposals=(300, 1000, 2000, 4000, 6000), proposal_image=(600, 1000),
            pre_nms=12000, size_overrides={})
QUICK = Grid(sides=(96, 128), proposals=(20, 50), proposal_image=(128, 213), pre_nms=300,
             size_overrides=QUICK_TOP_N, repeats=1)


def points(grid: Grid) -> list[dict]:
    """Every point of both scans: scan name, x value, image size, config overrides."""
    out = [dict(scan="image size", x=side, size=(side, round(side * 5 / 3)), overrides=grid.size_overrides)
           for side in grid.sides]
    for n in grid.proposals:
        overrides = dict(rpn_nms_thresh=SCAN_NMS_THRESH, rpn_pre_nms_top_n_train=grid.pre_nms,
                         rpn_pre_nms_top_n_test=grid.pre_nms, rpn_post_nms_top_n_train=n, rpn_post_nms_top_n_test=n)
        out.append(dict(scan="proposals", x=n, size=grid.proposal_image, overrides=overrides))
    return out


def kept(model, mode: str, images, targets) -> float:
    """Proposals our model keeps after NMS, mean over the images (one untimed forward)."""
    model.train(mode == "train step")
    with torch.no_grad():
        _, trace = model.forward_trace(images, targets if mode == "train step" else None)
    return trace["proposals"].valid.sum(1).float().mean().item()


def time_point(point: dict, backbone: str, grid: Grid, device: torch.device) -> list[dict]:
    """Median ms of ours and torchvision's at one point, per mode, and the proposals ours kept."""
    ours, theirs = build(backbone, same_work_config(point["size"], **point["overrides"]), device)
    images, targets = inputs(point["size"], device)
    out = []
    for mode in MODES:
        ours_ms = median_ms(step_fn(ours, mode, images, targets), grid.repeats, grid.warmup, device)
        tv_ms = median_ms(step_fn(theirs, mode, images, targets), grid.repeats, grid.warmup, device)
        out.append(dict(point, mode=mode, ours_ms=ours_ms, tv_ms=tv_ms, kept=kept(ours, mode, images, targets)))
        print(f"{point['scan']} {point['x']} {mode}: {ours_ms:.0f} ms, torchvision {tv_ms:.0f} ms", flush=True)
    return out


def attach_memory(rows: list[dict], backbone: str, device: torch.device, threads: int | None, quick: bool):
    """Add ours_mb / tv_mb (and their table cells) to every row."""
    cases = [dict(backbone=backbone, size=list(r["size"]), batch=1, model=model, mode=r["mode"],
                  overrides=r["overrides"]) for r in rows for model in ("ours", "torchvision")]
    results = measure_memory(cases, device, threads, one_process=quick)
    for i, r in enumerate(rows):
        ours, tv = results[2 * i], results[2 * i + 1]
        r.update(ours_mb=ours["step_mb"], tv_mb=tv["step_mb"], ours_cell=memory_text(ours), tv_cell=memory_text(tv))


def table(rows: list[dict], device: torch.device) -> list[str]:
    what = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS"
    lines = [f"| scan | image | N after NMS (kept by ours) | mode | frcnn_edu ms | torchvision ms | ratio (ours / tv) "
             f"| ours MB ({what} above model and inputs) | torchvision MB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        config = same_work_config(r["size"], **r["overrides"])
        n = config.rpn_post_nms_top_n_train if r["mode"] == "train step" else config.rpn_post_nms_top_n_test
        lines.append(f"| {r['scan']} | {r['size'][0]}x{r['size'][1]} | {n} ({r['kept']:.0f}) | {r['mode']} | "
                     f"{r['ours_ms']:.0f} | {r['tv_ms']:.0f} | {r['ours_ms'] / r['tv_ms']:.2f} | {r['ours_cell']} | "
                     f"{r['tv_cell']} |")
    return lines


def plot(rows: list[dict], png: Path, title: str) -> None:
    """Time (top) and memory (bottom) against the shorter image side (left) and N (right)."""
    h, w = next(r["size"] for r in rows if r["scan"] == "proposals")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    styles = {("ours", "train step"): ("C0", "-"), ("ours", "inference"): ("C1", "-"),
              ("tv", "train step"): ("C0", "--"), ("tv", "inference"): ("C1", "--")}
    for col, (scan, xlabel) in enumerate((("image size", "shorter image side, px (longer side = 5/3 of it)"),
                                          ("proposals", f"N, proposals kept after NMS ({h} x {w} image)"))):
        for (model, mode), (color, dash) in styles.items():
            points_ = [r for r in rows if r["scan"] == scan and r["mode"] == mode]
            label = f"{'frcnn_edu' if model == 'ours' else 'torchvision'}, {mode}"
            xs = [r["x"] for r in points_]
            axes[0, col].plot(xs, [r[f"{model}_ms"] for r in points_], dash, color=color, marker="o", label=label)
            axes[1, col].plot(xs, [r[f"{model}_mb"] for r in points_], dash, color=color, marker="o", label=label)
        axes[0, col].set_ylabel("median time, ms")
        axes[1, col].set_ylabel("peak memory above model and inputs, MB")
        axes[1, col].set_xlabel(xlabel)
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "two tiny images, two small N, one repeat (a smoke test)")
    parser.add_argument("--backbone", default="tiny", choices=["tiny", "vgg16"])
    parser.add_argument("--png", type=Path, default=Path(__file__).resolve().parent / "scaling.png")
    args, device, info = start(parser, argv)
    grid = QUICK if args.quick else FULL
    rows = [row for point in points(grid) for row in time_point(point, args.backbone, grid, device)]
    attach_memory(rows, args.backbone, device, args.threads, args.quick)
    title = (f"# frcnn_edu.FasterRCNN scaling: image size and proposals ({args.backbone} backbone)"
             + (" (--quick: not a measurement)" if args.quick else ""))
    notes = [f"- median of {grid.repeats} calls after {grid.warmup} warm-up call; one image; memory: the peak of one "
             "warm step above what the process held just before it"
             + ("" if device.type == "cuda" else ", each case in a fresh process"),
             f"- proposal scan: pre-NMS top {grid.pre_nms}, NMS IoU {SCAN_NMS_THRESH} (see the script's docstring); "
             f"plot: {args.png.name}"]
    text = "\n".join([title, "", *info, *notes, "", *table(rows, device), ""])
    plot(rows, args.png, f"{title[2:]}\n{info[1][2:]}")
    print(text, flush=True)
    return write_report(text, args.out)


if __name__ == "__main__":
    main()

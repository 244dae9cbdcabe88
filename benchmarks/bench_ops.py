"""Time frcnn_edu.ops against torchvision.ops' compiled kernels on Faster R-CNN-sized inputs.

    python benchmarks/bench_ops.py [--quick] [--device cpu|cuda] [--threads T] [--out benchmarks/results/ops_cpu.md]

Sizes follow the model: proposals over a 1000 x 600 image (NMS at IoU 0.7 on 2000 to 12000 of them, the RPN's
pre-NMS top-N of Faster R-CNN §3.3), per-class NMS at 0.3 over 20 classes (the test-time head), 2000 RoIs pooled
to 7 x 7 from VGG-16's conv5_3 of that image ([1, 512, 38, 63], spatial_scale 1/16). Each number is the median
of several repeats after warm-up. The ratio is ours / torchvision's: below 1 is faster.
`--quick` shrinks every input and runs once (the smoke test in tests/test_benchmarks_smoke.py uses it).
torchvision's CPU kernels for these ops run on one thread while ours are torch ops that use every thread, so
`--threads 1` compares the algorithms and the default compares what a user gets; on a busy machine the
multi-threaded numbers also pay for waiting on descheduled threads (see the load average in the header).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
import torchvision.ops as tv

from frcnn_edu import ops


@dataclass
class Sizes:
    nms: tuple[int, ...] = (2000, 6000, 12000)  # proposals per image before NMS
    batched: tuple[int, int] = (6000, 20)  # boxes, classes
    iou: int = 2000  # box_iou of iou x iou boxes
    rois: int = 2000  # Faster R-CNN §3.3: 2000 proposals per image in training
    feature: tuple[int, int, int, int] = (1, 512, 38, 63)  # conv5_3 of a 600 x 1000 image
    repeats: int = 7
    warmup: int = 2


QUICK = Sizes(nms=(50,), batched=(60, 3), iou=50, rois=10, feature=(1, 8, 10, 12), repeats=1, warmup=1)


def proposals(num: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposal-like float32 boxes over a 1000 x 600 image: sides 8..437 px, log-uniform, clipped; scores."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(num, 2, generator=gen) * torch.tensor([1000.0, 600.0])
    side = 8 * torch.exp(torch.rand(num, 2, generator=gen) * 4)
    boxes = tv.clip_boxes_to_image(torch.cat([centre - side / 2, centre + side / 2], dim=1), (600, 1000))
    return boxes.to(device), torch.rand(num, generator=gen).to(device)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def forward_backward(op: Callable, input: torch.Tensor, *args) -> Callable[[], None]:
    """A closure that runs op forward and backward with a fixed random upstream gradient."""
    x = input.detach().clone().requires_grad_(True)
    grad = torch.randn_like(op(x.detach(), *args))

    def run():
        x.grad = None
        op(x, *args).backward(grad)
    return run


def cases(sizes: Sizes, device: torch.device) -> list[tuple[str, str, Callable, Callable]]:
    """(op, size, ours, torchvision's) for every benchmarked call."""
    out = []
    for num in sizes.nms:
        boxes, scores = proposals(num, device)
        out.append(("nms", f"{num} boxes, IoU 0.7",
                    lambda b=boxes, s=scores: ops.nms(b, s, 0.7), lambda b=boxes, s=scores: tv.nms(b, s, 0.7)))
    num, classes = sizes.batched
    boxes, scores = proposals(num, device, seed=1)
    idxs = torch.randint(0, classes, (num,), generator=torch.Generator().manual_seed(2)).to(device)
    out.append(("batched_nms", f"{num} boxes, {classes} classes, IoU 0.3",
                lambda: ops.batched_nms(boxes, scores, idxs, 0.3), lambda: tv.batched_nms(boxes, scores, idxs, 0.3)))
    a, _ = proposals(sizes.iou, device, seed=3)
    out.append(("box_iou", f"{sizes.iou} x {sizes.iou}", lambda: ops.box_iou(a, a), lambda: tv.box_iou(a, a)))

    feature = torch.randn(sizes.feature, generator=torch.Generator().manual_seed(4)).to(device)
    rois, _ = proposals(sizes.rois, device, seed=5)
    rois = torch.cat([torch.zeros_like(rois[:, :1]), rois], dim=1)  # [R, 5], all in image 0
    n, c, h, w = sizes.feature
    shape = f"{sizes.rois} RoIs, [{n}, {c}, {h}, {w}], 7x7"
    pool_args = (rois, 7, 1 / 16)
    out.append(("roi_pool fwd", shape, lambda: ops.roi_pool(feature, *pool_args),
                lambda: tv.roi_pool(feature, *pool_args)))
    out.append(("roi_pool fwd+bwd", shape, forward_backward(ops.roi_pool, feature, *pool_args),
                forward_backward(tv.roi_pool, feature, *pool_args)))
    for sampling_ratio in (2, -1):
        align_args = (rois, 7, 1 / 16, sampling_ratio, False)
        label = f"{shape}, sampling_ratio {sampling_ratio}"
        out.append(("roi_align fwd", label, lambda a=align_args: ops.roi_align(feature, *a),
                    lambda a=align_args: tv.roi_align(feature, *a)))
        out.append(("roi_align fwd+bwd", label, forward_backward(ops.roi_align, feature, *align_args),
                    forward_backward(tv.roi_align, feature, *align_args)))
    return out


def machine_info(device: torch.device) -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    info = [
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- CPU: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average {load}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}",
        f"- device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
    ]
    return info


def run(sizes: Sizes, device: torch.device) -> list[str]:
    """Time every case; returns the markdown table's lines."""
    lines = ["| op | size | frcnn_edu ms | torchvision ms | ratio (ours / tv) |", "|---|---|---:|---:|---:|"]
    for op, size, ours, ref in cases(sizes, device):
        ours_ms = median_ms(ours, sizes.repeats, sizes.warmup, device)
        ref_ms = median_ms(ref, sizes.repeats, sizes.warmup, device)
        lines.append(f"| {op} | {size} | {ours_ms:.2f} | {ref_ms:.2f} | {ours_ms / ref_ms:.2f} |")
        print(lines[-1], flush=True)
    return lines


def benchmark_parser(description: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark script shares: --quick, --device, --threads, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (markdown)")
    return parser


def start(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, torch.device, list[str]]:
    """Parse the options, apply --threads, check the device, print and return the machine's header lines."""
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False on this machine")
    device = torch.device(args.device)
    info = machine_info(device)
    print("\n".join(info) + "\n", flush=True)
    return args, device, info


def write_report(text: str, out: Path | None) -> str:
    """Write a script's markdown report to `out` (when given, making its folder) and return it."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "tiny inputs, one repeat (a smoke test)")
    args, device, info = start(parser, argv)
    sizes = QUICK if args.quick else Sizes()
    table = run(sizes, device)
    title = "# frcnn_edu.ops vs torchvision.ops" + (" (--quick: tiny sizes, not a measurement)" if args.quick else "")
    text = "\n".join([title, "", *info, f"- median of {sizes.repeats} repeats after {sizes.warmup} warm-up calls",
                      "", *table, ""])
    return write_report(text, args.out)


if __name__ == "__main__":
    main()

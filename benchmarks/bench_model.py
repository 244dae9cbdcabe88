"""Time frcnn_edu.FasterRCNN against torchvision's FasterRCNN doing the same work; peak memory and host round-trips.

    python benchmarks/bench_model.py [--quick] [--device cpu|cuda] [--threads T] [--out benchmarks/results/model.md]
                                     [--backbones tiny,vgg16] [--batches 1,2]

Both models share the same modules and weights (frcnn_edu.instruments.twin.torchvision_twin) and the same configuration:
the paper's scale (600 x 1000 images), anchors and top-N, with our deliberate differences switched to
torchvision's behaviour so both do the same work (cross-boundary anchors used, background IoU from 0).
For each backbone (tiny, VGG-16 with RoI pooling) and batch size it reports the median time of a training step
(zero_grad, forward, backward) and of an inference, the ratio ours / torchvision's, the host round-trips per
step (Python-level reads such as .item() and .tolist(), plus hidden ones below Python such as nonzero and
boolean-mask indexing), and the peak memory of one step above what the model and inputs already hold.
Peak memory on CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated
before the step (exact: the caching allocator counts every tensor). On CPU: peak RSS minus RSS before the step.
RSS is a per-process high-water mark that never goes down and also counts freed memory the C allocator keeps,
so each (backbone, batch, model, mode) runs in a fresh process (this script, with a hidden option): it builds
the model and inputs, runs one warm-up step (lazy initialisation, code pages, gradients), frees what glibc
keeps (malloc_trim), resets the kernel's high-water mark (/proc/self/clear_refs, Linux >= 4.0) and measures one
step. Without clear_refs it falls back to ru_maxrss, which then also counts building the model (marked '*').
`--quick`: a small image, fewer proposals, one repeat, all memory cases in one child process (the smoke test).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import resource
import subprocess
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import benchmark_parser, median_ms, start, write_report  # noqa: E402

from frcnn_edu import FasterRCNN, FasterRCNNConfig  # noqa: E402
from frcnn_edu.instruments.syncs import HiddenSyncCounter, count_python_reads  # noqa: E402
from frcnn_edu.instruments.twin import torchvision_twin  # noqa: E402

MODES = ("train step", "inference")
MEMORY_TAG = "MEMORY_JSON "  # the child's result line on stdout
QUICK_TOP_N = dict(rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=100,  # --quick: fewer proposals
                   rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=50)


def same_work_config(size: tuple[int, int], **overrides) -> FasterRCNNConfig:
    """The paper's configuration at this image size, with torchvision's behaviour where ours differs."""
    settings = dict(min_size=min(size), max_size=max(size), rpn_min_size=1e-3, rpn_ignore_cross_boundary=False,
                    roi_bg_iou_thresh_lo=0.0, representation_size=1024)
    settings.update(overrides)
    return FasterRCNNConfig.paper_vgg16(**settings)


def inputs(size: tuple[int, int], device: torch.device, batch: int = 1):
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, *size, generator=gen).to(device) for _ in range(batch)]
    boxes = torch.tensor([[50.0, 60, 300, 400], [400, 100, 700, 380], [600, 300, 950, 580]])
    boxes = boxes * torch.tensor([size[1] / 1000, size[0] / 600] * 2)  # drawn for 600 x 1000; scaled to the image
    targets = [dict(boxes=boxes.to(device), labels=torch.tensor([1, 2, 1], device=device)) for _ in range(batch)]
    return images, targets


def train_step(model, images, targets):
    def step():
        model.zero_grad(set_to_none=True)  # as optimizer.zero_grad() does: each step allocates its gradients
        losses = model(images, targets)
        sum(losses.values()).backward()
    return step


def inference(model, images):
    def run():
        with torch.no_grad():
            model(images)
    return run


def build(backbone: str, config: FasterRCNNConfig, device: torch.device):
    """Our model and its torchvision twin (same modules, same weights), seeded."""
    torch.manual_seed(0)
    ours = FasterRCNN(3, backbone, config, check_inputs=False).to(device)
    return ours, torchvision_twin(ours)


def step_fn(model, mode: str, images, targets):
    """The closure for one call of `mode` ("train step" or "inference"); sets the model's train/eval mode."""
    model.train(mode == "train step")
    return train_step(model, images, targets) if mode == "train step" else inference(model, images)


def round_trips(fn) -> tuple[int, int]:
    """(Python-level reads, hidden syncs) during one call of fn, on the path a GPU runs: without CPU inference's
    RoIAlign windows, which read each RoI's band on the host by design (frcnn_edu/ops/roi_align.py)."""
    with mock.patch("frcnn_edu.ops.roi_align._windows_pay", return_value=False), \
            count_python_reads() as reads, HiddenSyncCounter() as hidden:
        fn()
    return len(reads), hidden.count


# ---- peak memory ----

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_rss_peak() -> bool:
    """Free what glibc keeps, then set the kernel's peak RSS to the current RSS; False where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def step_peak_mb(fn, device: torch.device) -> tuple[float, float, str]:
    """(memory held before one call of fn, its peak during the call) in MB, and how it was measured.

    fn has already run once (warm-up). On CPU, run this in a fresh process: see the module docstring.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return base / 2**20, torch.cuda.max_memory_allocated(device) / 2**20, "cuda"
    if _reset_rss_peak():
        base = _status_kb("VmRSS")
        fn()
        return base / 1024, _status_kb("VmHWM") / 1024, "rss"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux (bytes on macOS; rough either way)
    fn()
    return base / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"


def memory_case(case: dict, device: torch.device) -> dict:
    """Build one case's model and inputs, warm up, measure: case has backbone, size, batch, model, mode and
    config overrides."""
    size = tuple(case["size"])
    ours, theirs = build(case["backbone"], same_work_config(size, **case["overrides"]), device)
    images, targets = inputs(size, device, case["batch"])
    fn = step_fn(ours if case["model"] == "ours" else theirs, case["mode"], images, targets)
    fn()
    base, peak, method = step_peak_mb(fn, device)
    return dict(case, base_mb=base, peak_mb=peak, step_mb=peak - base, method=method)


def measure_memory(cases: list[dict], device: torch.device, threads: int | None, one_process: bool) -> list[dict]:
    """memory_case for each case: in place on CUDA; on CPU in fresh processes of this script, one per case
    (or one for all when one_process, a smoke test's shortcut)."""
    if device.type == "cuda":
        return [memory_case(case, device) for case in cases]
    groups = [cases] if one_process else [[case] for case in cases]
    results = []
    for group in groups:
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-cases", json.dumps(group),
                   "--device", device.type] + ([] if threads is None else ["--threads", str(threads)])
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_TAG)]
        if done.returncode != 0 or not lines:
            raise ChildProcessError(f"memory child failed (exit {done.returncode}): {' '.join(command)}\n"
                                    f"{done.stderr[-2000:]}")
        results += json.loads(lines[-1][len(MEMORY_TAG):])
    return results


def memory_text(result: dict) -> str:
    """A table cell: MB above model and inputs; '*' where only ru_maxrss was available."""
    return f"{result['step_mb']:.0f}" + ("*" if result["method"] == "ru_maxrss" else "")


def peak_memory(backbones, batches, size, overrides, device, threads, quick) -> dict:
    """{(backbone, batch, model, mode): table cell} for every case of the table."""
    cases = [dict(backbone=b, size=list(size), batch=n, model=m, mode=mode, overrides=overrides)
             for b in backbones for n in batches for mode in MODES for m in ("ours", "torchvision")]
    return {(r["backbone"], r["batch"], r["model"], r["mode"]): memory_text(r)
            for r in measure_memory(cases, device, threads, one_process=quick)}


# ---- time and round-trips ----

def measure(backbone: str, size: tuple[int, int], overrides: dict, batch: int, device: torch.device, repeats: int,
            memory: dict) -> list[str]:
    ours, theirs = build(backbone, same_work_config(size, **overrides), device)
    images, targets = inputs(size, device, batch)
    rows = []
    for mode in MODES:
        ours_fn, theirs_fn = step_fn(ours, mode, images, targets), step_fn(theirs, mode, images, targets)
        ours_ms = median_ms(ours_fn, repeats, 1, device)
        theirs_ms = median_ms(theirs_fn, repeats, 1, device)
        (ours_py, ours_hidden), (tv_py, tv_hidden) = round_trips(ours_fn), round_trips(theirs_fn)
        ours_mb, tv_mb = memory[backbone, batch, "ours", mode], memory[backbone, batch, "torchvision", mode]
        rows.append(f"| {backbone} | {mode} | {size[0]}x{size[1]} | {batch} | {ours_ms:.0f} | {theirs_ms:.0f} | "
                    f"{ours_ms / theirs_ms:.2f} | {ours_mb} | {tv_mb} | {ours_py} + {ours_hidden} | "
                    f"{tv_py} + {tv_hidden} |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "a small image, one repeat (a smoke test)")
    parser.add_argument("--backbones", default="tiny,vgg16")
    parser.add_argument("--batches", default="1,2", help="images per batch, comma-separated")
    parser.add_argument("--memory-cases", default=None, help=argparse.SUPPRESS)
    args, device, info = start(parser, argv)
    if args.memory_cases is not None:  # a child process: measure, print one result line, exit
        text = MEMORY_TAG + json.dumps([memory_case(case, device) for case in json.loads(args.memory_cases)])
        print(text, flush=True)
        return text
    size, repeats, overrides = ((128, 160), 1, QUICK_TOP_N) if args.quick else ((600, 1000), 3, {})
    backbones, batches = args.backbones.split(","), [int(n) for n in args.batches.split(",")]
    memory = peak_memory(backbones, batches, size, overrides, device, args.threads, args.quick)
    what = "MB above model and inputs: " + ("CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS")
    table = [f"| backbone | mode | image | batch | frcnn_edu ms | torchvision ms | ratio (ours / tv) | "
             f"ours {what} | torchvision | round-trips ours (python + hidden) | torchvision |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for backbone in backbones:
        for batch in batches:
            table += measure(backbone, size, overrides, batch, device, repeats, memory)
    title = "# frcnn_edu.FasterRCNN vs torchvision's FasterRCNN" + (" (--quick: not a measurement)" if args.quick else "")
    notes = [f"- median of {repeats} repeats after 1 warm-up call; a batch of N images of the same size",
             "- memory: the peak of one warm step above what the process held just before it"
             + ("" if device.type == "cuda" else ", each case in a fresh process (see the script's docstring)"
                + ("; --quick: all cases in one process" if args.quick else ""))]
    text = "\n".join([title, "", *info, *notes, "", *table, ""])
    return write_report(text, args.out)


if __name__ == "__main__":
    main()

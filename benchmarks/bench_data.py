"""Training-data pipelines: memory and speed of a training run reading its images from memory or from disk.

    python benchmarks/bench_data.py [--quick] [--threads T] [--out benchmarks/results/data.md]

Each case is a fresh `python -m frcnn_edu.train` process (the demo's recipe, tiny backbone, CPU) on the built-in
dataset's generator at two sizes (500 training images, the built-in set, and 4x as many), run for a fixed number
of iterations. Memory: the peak, sampled every 0.1 s, of the resident memory summed over the training process
and its DataLoader workers (their shared pages counted in each: an upper bound). Speed: seconds per iteration
from losses.csv, after the first 20 (warm-up). The pipelines: every image decoded once into memory
(`--in-memory`, uint8) against each decoded when a batch needs it (`--workers 0`: in the training process;
`--workers N`: N DataLoader processes a few batches ahead).
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import benchmark_parser, start, write_report  # noqa: E402

from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset  # noqa: E402

PIPELINES = {"in memory": ["--in-memory"], "from disk": ["--no-in-memory", "--workers", "0"],
             "from disk, 1 worker": ["--no-in-memory", "--workers", "1"],
             "from disk, 2 workers": ["--no-in-memory", "--workers", "2"]}
WARMUP = 20


def peak_tree_rss(process: subprocess.Popen) -> float:
    """Peak resident MB of the process and its children, sampled until it exits."""
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:  # a worker ending between the listing and the reading
            pass
        time.sleep(0.1)
    return peak / 2**20


def seconds_per_iteration(losses: Path) -> float:
    with open(losses) as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    return (seconds[-1] - seconds[WARMUP]) / (len(seconds) - 1 - WARMUP)


def run_case(devkit: Path, out: Path, flags: list[str], iterations: int, threads: int | None) -> tuple[float, float]:
    """(peak MB, s per iteration) of one training run."""
    command = [sys.executable, "-m", "frcnn_edu.train", "--data", "voc", "--root", str(devkit), "--year", "builtin",
               "--classes", ",".join(BUILTIN_CLASSES), "--iterations", str(iterations), "--zoom", "0.3",
               "--eval-images", "8", "--out", str(out), *flags]
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak = peak_tree_rss(process)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read()[-2000:]}")
    return peak, seconds_per_iteration(out / "losses.csv")


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "one small dataset, few iterations (a smoke test)")
    args, _, info = start(parser, argv)
    sizes, iterations = ((40,), WARMUP + 6) if args.quick else ((500, 2000), 120)
    rows = ["| training images | pipeline | peak MB (process + workers) | s per iteration |", "|---:|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            devkit = make_builtin_dataset(Path(tmp) / f"builtin{size}", seed=0, num_train=size, num_test=8)
            for name, flags in PIPELINES.items():
                peak, step = run_case(devkit, Path(tmp) / f"run{size}-{len(rows)}", flags, iterations, args.threads)
                rows.append(f"| {size} | {name} | {peak:.0f} | {step:.3f} |")
                print(rows[-1], flush=True)
    title = "# Training data: from memory or from disk" + (" (--quick: not a measurement)" if args.quick else "")
    notes = [f"- each case a fresh training process, {iterations} iterations of 4 images (the demo's recipe); "
             f"s per iteration after the first {WARMUP}; peak resident memory sampled every 0.1 s"]
    return write_report("\n".join([title, "", *info, *notes, "", *rows, ""]), args.out)


if __name__ == "__main__":
    main()

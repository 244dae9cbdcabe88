"""torch.compile on frcnn_edu.FasterRCNN (and torchvision's twin): does it capture, what does it cost, does it pay.

    python benchmarks/bench_compile.py [--quick] [--device cpu|cuda] [--threads T] [--out benchmarks/results/compile.md]
                                       [--budget-s 440]

Our forward has no host round-trip in a training step and one per image at the end of an inference (the ragged
per-image output), so TorchDynamo should capture a training step in one graph and an inference in one graph plus
the output. torchvision's forward reads the device in its transform, sampler and post-processing (graph breaks).
For each case, in a fresh process (clean Dynamo state, a cold Inductor cache, a hard time limit), this script
reports: the graphs, graph breaks and FX ops of the forward (torch._dynamo.explain, tracing only) and where the
first break is; the first compiled call (compile time, one run included); the median eager and compiled times
after warm-up (two models with the same weights, timed in turns); or the exception, briefly.
Models: the tiny backbone with its own configuration (tiny_cpu: 200 / 100 proposals after NMS in training /
inference) at a 600 x 1000 image and a small one (128 x 160), both implementations sharing weights
(frcnn_edu.instruments.twin). Compilers: Inductor (mode "default"); Inductor on the networks only (backbone, RPN head, box
head; the proposal layer and NMS stay eager); on CUDA also mode="reduce-overhead" (CUDA graphs), which a CPU run
lists as skipped. A last, explain-only row traces our training step with the paper's top-N (2000 proposals after
NMS, as bench_model.py runs it): tracing alone takes minutes.
Why compile time matters here: NMS without host reads (frcnn_edu.ops.first_kept) is a Python loop over blocks of
boxes (one custom op, frcnn_edu::settle, per block), and Dynamo unrolls Python loops, so the graph grows with the
pre-NMS proposal count and so does compile time.
A full run on a 2-core CPU takes about a minute or more per full-model compile, so the cases run in priority order
within --budget-s seconds (600 x 1000 first); a case cut off by the budget says so and later ones are listed as
skipped (--budget-s 1500 runs them all).
`--quick`: the small image, fewer proposals, one repeat, backend "aot_eager" (Dynamo and AOTAutograd, no code
generation: Inductor's C++ compile takes minutes on a CPU) and all cases in one process (the smoke test).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import build, inputs, same_work_config, step_fn  # noqa: E402
from bench_ops import benchmark_parser, median_ms, start, write_report  # noqa: E402

from frcnn_edu import FasterRCNNConfig  # noqa: E402

RESULT_TAG = "COMPILE_JSON "  # the child's result line on stdout
MIN_CASE_S = 30  # a case is not started with less of the budget left: no compile finishes that fast here
SMALL, PAPER_SCALE = [128, 160], [600, 1000]
QUICK_TOP_N = dict(rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=300,
                   rpn_post_nms_top_n_test=20, box_detections_per_img=10)
NETWORKS = ("backbone", "rpn", "box_head", "box_predictor")  # the dense parts of FasterRCNN


def case(model: str, mode: str, size: list[int], compiler: str, config: str = "tiny") -> dict:
    """One row: model "ours" | "torchvision"; mode "train step" | "inference"; compiler "inductor" |
    "networks" (Inductor on NETWORKS only) | "reduce-overhead" | "aot_eager" | "explain" (tracing only);
    config "tiny" (tiny_cpu at this size), "quick" (tiny_cpu with QUICK_TOP_N) or "paper" (bench_model's)."""
    return dict(model=model, mode=mode, size=size, compiler=compiler, config=config)


def cases(device: torch.device, quick: bool) -> list[dict]:
    """Every case, most important first (the budget cuts the tail)."""
    if quick:  # aot_eager: Inductor's C++ compile would take minutes
        return [case(model, mode, SMALL, compiler, "quick") for model, mode, compiler in (
            ("ours", "train step", "aot_eager"), ("ours", "inference", "aot_eager"),
            ("torchvision", "train step", "aot_eager"), ("ours", "train step", "reduce-overhead"))]
    modes = ("train step", "inference")
    out = [case(model, mode, PAPER_SCALE, "inductor") for model in ("ours", "torchvision") for mode in modes]
    out += [case("ours", mode, PAPER_SCALE, compiler) for compiler in ("reduce-overhead", "networks") for mode in modes]
    out += [case(model, mode, SMALL, "inductor") for model in ("ours", "torchvision") for mode in modes]
    return out + [case("ours", "train step", PAPER_SCALE, "explain", "paper")]


def config_for(c: dict) -> FasterRCNNConfig:
    h, w = c["size"]
    if c["config"] == "paper":
        return same_work_config((h, w))
    extra = QUICK_TOP_N if c["config"] == "quick" else {}
    return FasterRCNNConfig.tiny_cpu(min_size=min(h, w), max_size=max(h, w), **extra)


# ---- in the child process ----

def brief(error: BaseException) -> str:
    """The exception's type and first line, with paths to generated code shortened."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    first = re.sub(r"/\S+\.(cpp|py)(:\d+)?", "<generated code>", lines[0]) if lines else ""
    return f"{type(error).__name__}: {first[:160]}"


def explain(model, args, mode: str) -> dict:
    """Graphs, breaks and FX ops of one forward as Dynamo traces it (no compilation), and the first break."""
    torch._dynamo.reset()
    start_s = time.perf_counter()
    with torch.set_grad_enabled(mode == "train step"):
        out = torch._dynamo.explain(model)(*args)
    info = dict(graphs=out.graph_count, breaks=out.graph_break_count, ops=out.op_count,
                trace_s=time.perf_counter() - start_s)
    if out.break_reasons:
        first = out.break_reasons[0]
        where = first.user_stack[-1] if first.user_stack else None
        info["first_break"] = first.reason.splitlines()[0][:100] + (
            f" ({Path(where.filename).name}:{where.lineno})" if where else "")
    torch._dynamo.reset()
    return info


def compiled_model(model, compiler: str):
    """The model with torch.compile applied as `compiler` says (see case)."""
    if compiler == "networks":
        for name in NETWORKS:
            setattr(model, name, torch.compile(getattr(model, name)))
        return model
    if compiler == "aot_eager":
        return torch.compile(model, backend="aot_eager")
    return torch.compile(model, mode="reduce-overhead" if compiler == "reduce-overhead" else "default")


def skip_reason(c: dict, device: torch.device) -> str | None:
    if c["compiler"] == "reduce-overhead" and device.type != "cuda":
        return "skipped: CUDA graphs need a CUDA device"
    return None


def interleaved_ms(fns: list, repeats: int, device: torch.device) -> list[float]:
    """Median ms of each fn, timed in turns (eager, compiled, eager, ...) so that a change in the machine's load
    hits both alike; the fns have been warmed up."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            out.append(median_ms(fn, 1, 0, device))
    return [statistics.median(t) for t in times]


def run_case(c: dict, device: torch.device, repeats: int, warmup: int) -> dict:
    """Dynamo's view, compile, then eager and compiled times; any exception is reported, not raised."""
    if skip_reason(c, device):
        return dict(c, skipped=skip_reason(c, device))
    result = dict(c)
    torch._inductor.config.force_disable_caches = True  # a cold compile, as a user's first run
    torch._inductor.config.compile_threads = torch.get_num_threads()  # respect --threads
    size, pick = tuple(c["size"]), 0 if c["model"] == "ours" else 1
    eager, model = build("tiny", config_for(c), device)[pick], build("tiny", config_for(c), device)[pick]
    model.train(c["mode"] == "train step")  # for explain; step_fn sets it too
    images, targets = inputs(size, device)
    args = (images, targets) if c["mode"] == "train step" else (images,)
    eager_fn = step_fn(eager, c["mode"], images, targets)
    for _ in range(warmup):
        eager_fn()
    try:
        if c["compiler"] != "networks":  # the full model's graphs: the inductor row has them
            result.update(explain(model, args, c["mode"]))
        if c["compiler"] == "explain":
            return result
        fn = step_fn(compiled_model(model, c["compiler"]), c["mode"], images, targets)
        start_s = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result["first_call_s"] = time.perf_counter() - start_s
        for _ in range(warmup):
            fn()
        result["eager_ms"], result["compiled_ms"] = interleaved_ms([eager_fn, fn], repeats, device)
    except Exception as error:  # a benchmark reports why it does not compile; it does not stop
        result["error"] = brief(error)
    if "eager_ms" not in result:
        result["eager_ms"] = median_ms(eager_fn, repeats, 0, device)
    return result


# ---- in the parent ----

def run_in_children(todo: list[dict], device: torch.device, threads: int | None, quick: bool,
                    budget_s: float) -> list[dict]:
    """Each case in a fresh process (all in one with quick) with a cold Inductor cache, within budget_s."""
    groups = [todo] if quick else [[c] for c in todo]
    results, deadline = [], time.monotonic() + budget_s
    for group in groups:
        left = deadline - time.monotonic()
        if all(skip_reason(c, device) for c in group):
            results += [dict(c, skipped=skip_reason(c, device)) for c in group]
            continue
        if left < MIN_CASE_S:
            results += [dict(c, skipped=f"skipped: --budget-s {budget_s:.0f} spent") for c in group]
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--cases", json.dumps(group),
                   "--device", device.type] + (["--quick"] if quick else []) + (
                   [] if threads is None else ["--threads", str(threads)])
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
            print(f"running {[(c['model'], c['mode'], c['compiler']) for c in group]} ({left:.0f} s left)",
                  flush=True)
            try:
                done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=left)
            except subprocess.TimeoutExpired:
                results += [dict(c, error=f"not done when --budget-s {budget_s:.0f} ran out ({left:.0f} s left "
                                          "at its start)") for c in group]
                continue
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
        if done.returncode != 0 or not lines:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            results += [dict(c, error=f"child exit {done.returncode}: {tail[0][:160]}") for c in group]
            continue
        results += json.loads(lines[-1][len(RESULT_TAG):])
    return results


def row(r: dict) -> str:
    h, w = r["size"]
    compiler = {"networks": "inductor, networks only", "explain": "none (explain only)"}.get(
        r["compiler"], r["compiler"]) + (", paper top-N" if r["config"] == "paper" else "")
    capture = f"{r['graphs']} / {r['breaks']} ({r['ops']} ops, {r['trace_s']:.0f} s)" if "graphs" in r else ""
    eager = f"{r['eager_ms']:.0f}" if "eager_ms" in r else ""
    first = f"{r['first_call_s']:.1f}" if "first_call_s" in r else ""
    compiled = f"{r['compiled_ms']:.0f}" if "compiled_ms" in r else ""
    speedup = f"{r['eager_ms'] / r['compiled_ms']:.2f}" if "compiled_ms" in r else ""
    note = r.get("skipped") or r.get("error") or r.get("first_break", "")
    return (f"| {r['model']} | {r['mode']} | {h}x{w} | {compiler} | {capture} | {first} | {eager} | {compiled} | "
            f"{speedup} | {note} |")


def main(argv: list[str] | None = None) -> str:
    parser = benchmark_parser(__doc__.split("\n\n")[0], "small image, aot_eager, one repeat (a smoke test)")
    parser.add_argument("--budget-s", type=float, default=440.0,
                        help="wall-clock seconds for all compile cases together (default 440)")
    parser.add_argument("--cases", default=None, help=argparse.SUPPRESS)  # a child process's cases (JSON)
    args, device, info = start(parser, argv)
    repeats, warmup = (1, 1) if args.quick else (5, 2)
    if args.cases is not None:  # a child process: run, print one result line, exit
        text = RESULT_TAG + json.dumps([run_case(c, device, repeats, warmup) for c in json.loads(args.cases)])
        print(text, flush=True)
        return text
    wall = time.perf_counter()
    results = run_in_children(cases(device, args.quick), device, args.threads, args.quick,
                              120.0 if args.quick else args.budget_s)
    table = ["| model | mode | image | compiler | graphs / breaks (FX ops, trace time) | first compiled call s | "
             "eager ms | compiled ms | speed-up | first graph break, error or skip |",
             "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    table += [row(r) for r in results]
    title = "# torch.compile on frcnn_edu.FasterRCNN and torchvision's" + (
        " (--quick: aot_eager, not a measurement)" if args.quick else "")
    notes = [f"- median of {repeats} calls after {warmup} warm-up calls, eager and compiled taking turns in the same "
             "process; the first compiled call includes compiling (Inductor cache cold)",
             "- tiny backbone with tiny_cpu's proposal counts (200 / 100 after NMS in training / inference), "
             "one image" + (" (--quick: 30 / 20)" if args.quick else ""),
             f"- wall time of this run: {time.perf_counter() - wall:.0f} s"]
    text = "\n".join([title, "", *info, *notes, "", *table, ""])
    print("\n".join(table), flush=True)
    return write_report(text, args.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The checks that need a GPU, in one run (issue 13): made for a lent machine with a short budget (15 minutes
# with its start; at most 10 per command), not for CI. From the repository root:
#
#     OUT=gpu_out bash benchmarks/gpu_check.sh [section ...]     # default: every section, in this order
#
# PY=/path/to/python chooses the interpreter; otherwise .venv's, else a system python3 with CUDA torch, else a new
# .venv (pip install -e '.[dev]': needs the network). Without a GPU it says so and exits 2 (DRY_RUN=1: runs anyway).
# Sections, most wanted first, each under a timeout (their sum stays under 10 minutes), each log tee'd to $OUT:
#   tests     pytest -m cuda: CUDA parity of the ops and model (float64, against the CPU), CUDA graphs, syncs
#   syncs     a training step of each backbone (600x1000, paper top-N) under torch.cuda.set_sync_debug_mode, and
#             30 steps of the Trainer's loop (losses read once every 10 steps)
#   opcount   benchmarks/bench_opcount.py --device cuda: op counts, and CUDA-graph replay ms vs torchvision eager
#   model     benchmarks/bench_model.py --device cuda: eager step and inference times, memory, round-trips
#   ops       benchmarks/bench_ops.py --device cuda: each op against torchvision's CUDA kernels
#   compile   the torch.compile(mode="reduce-overhead") test: last, as Inductor's compile takes a minute or more
# A failing section does not stop the others; the summary at the end (also $OUT/summary.txt) lists each one.
# Then, on the development machine: copy $OUT's ops_cuda.md, model_cuda.md and opcount_cuda.md into
# benchmarks/results/ and run benchmarks/report.py: RESULTS.md gains the CUDA tables and their targets.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"

has_cuda_torch() {  # $1: a python; true when it imports torch and torchvision and sees a GPU
    "$1" -c 'import sys, torch, torchvision, pytest; sys.exit(not torch.cuda.is_available())' 2>/dev/null
}

# A fresh machine has no .venv, and may have no network: prefer any python that already has CUDA torch.
if [ -n "${PY:-}" ]; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif has_cuda_torch .venv/bin/python; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null && has_cuda_torch "$(command -v python3)"; then
    PY="$(command -v python3)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # frcnn_edu from the checkout, not installed
elif [ -x .venv/bin/python ]; then
    PY=.venv/bin/python  # a machine without a GPU, most likely: said just below
else
    python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' 2>&1 | tail -5 | tee "$OUT/venv.log"
    PY=.venv/bin/python
fi
if ! has_cuda_torch "$PY"; then
    echo "gpu_check: $PY sees no CUDA device (or lacks torch, torchvision or pytest): nothing to check here" >&2
    [ -n "${DRY_RUN:-}" ] || exit 2  # DRY_RUN=1 runs the sections anyway: their plumbing, without a GPU
fi

# The test files that hold CUDA tests (tests/test_gpu_check.py keeps this list whole). Only these: a machine lent
# with its own PyTorch may lack what other test files import (selenium, pycocotools, ipywidgets), and one file that
# fails to import stops the whole pytest run.
CUDA_TEST_FILES="tests/test_ops.py tests/test_model.py tests/test_cuda_graphs.py"

SYNC_CHECK='
import sys, warnings, torch
sys.path.insert(0, "benchmarks")
from bench_model import build, inputs, same_work_config
device = torch.device("cuda")
failed = False
for backbone in ("tiny", "vgg16"):
    ours, _ = build(backbone, same_work_config((600, 1000)), device)
    images, targets = inputs((600, 1000), device)
    optimizer = torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9)
    def step():
        optimizer.zero_grad(set_to_none=True)
        sum(ours(images, targets).values()).backward()
        optimizer.step()
    step()  # lazy initialisation may synchronise once
    torch.cuda.synchronize()
    # "warn" rather than "error": one run lists every synchronising call, not only the first
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step()
    torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] + f" ({w.filename}:{w.lineno})" for w in caught
             if "synchronizing" in str(w.message)]
    print(f"{backbone}: {len(syncs)} synchronising calls in a training step", *syncs, sep="\n  ")
    failed |= bool(syncs)

# The training loop around the step: 30 steps of frcnn_edu.train.Trainer on 40 generated images (epochs of 10
# steps) should read the device only to fetch the losses, once every LOSS_READ_EVERY steps (checkpoints off: saving
# copies every weight to the host)
import tempfile
from pathlib import Path
from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.train import LOSS_READ_EVERY, TrainArgs, Trainer, build_model
from frcnn_edu.training_data import InMemory, load_split
folder = Path(tempfile.mkdtemp())
root = make_builtin_dataset(folder / "builtin", seed=0, num_train=40, num_test=4)
args = TrainArgs(root=str(root), out=str(folder / "run"), iterations=40, device="cuda")
model = build_model(args, len(BUILTIN_CLASSES) + 1).to(device)
trainer = Trainer(args, model, InMemory(load_split(args, args.image_set)))
trainer.save = lambda: None
trainer.fit(stop_after=10)  # warm: lazy initialisation
torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode("warn")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    trainer.fit(stop_after=30)
torch.cuda.set_sync_debug_mode("default")
syncs = [str(w.message).splitlines()[0] + f" ({w.filename}:{w.lineno})" for w in caught
         if "synchronizing" in str(w.message)]
print(f"Trainer.fit: {len(syncs)} synchronising calls in 30 steps (expected {30 // LOSS_READ_EVERY})", *syncs,
      sep="\n  ")
failed |= len(syncs) > 30 // LOSS_READ_EVERY
sys.exit(failed)
'

section() {  # section NAME SECONDS COMMAND...: run it under a timeout, log to $OUT/NAME.log, record the outcome
    local name=$1 seconds=$2
    shift 2
    echo "=== $name (at most ${seconds}s): $*"
    local start=$SECONDS
    timeout -k 10 "$seconds" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]} verdict=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        verdict="TIMEOUT"
    elif [ "$rc" -ne 0 ]; then
        verdict="FAILED (exit $rc)"
    fi
    printf '%-8s %-18s %4ss  %s\n' "$name" "$verdict" "$((SECONDS - start))" "$OUT/$name.log" >>"$OUT/summary.txt"
}

: >"$OUT/summary.txt"
"$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__,
"CUDA", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' \
    2>&1 | tee "$OUT/env.log"
COMPILE_TEST=reduce_overhead_compile_matches_eager
for name in ${@:-tests syncs opcount model ops compile}; do
    case $name in
        tests)   section tests 110 "$PY" -m pytest -q -m cuda $CUDA_TEST_FILES -k "not $COMPILE_TEST" -rs \
                     -p no:cacheprovider ;;
        syncs)   section syncs 70 "$PY" -c "$SYNC_CHECK" ;;
        opcount) section opcount 120 "$PY" benchmarks/bench_opcount.py --device cuda --out "$OUT/opcount_cuda.md" ;;
        model)   section model 120 "$PY" benchmarks/bench_model.py --device cuda --out "$OUT/model_cuda.md" ;;
        ops)     section ops 80 "$PY" benchmarks/bench_ops.py --device cuda --out "$OUT/ops_cuda.md" ;;
        compile) section compile 90 "$PY" -m pytest -q -m cuda tests/test_cuda_graphs.py -k "$COMPILE_TEST" -rs \
                     -p no:cacheprovider ;;
        *)       echo "unknown section: $name (tests syncs opcount model ops compile)" | tee -a "$OUT/summary.txt" ;;
    esac
done
echo "=== summary ($PY)"
cat "$OUT/summary.txt"

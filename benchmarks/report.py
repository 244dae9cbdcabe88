"""Assemble benchmarks/RESULTS.md from the benchmark scripts' outputs, with the issue's targets checked.

    python benchmarks/report.py [--results benchmarks/results] [--out benchmarks/RESULTS.md]

`make bench` runs every script with `--out benchmarks/results/<name>.md` (bench_ops once per device), then this.
RESULTS.md starts with the machine and versions, then one line per target with the measured figure and whether
it is met, then every script's own report (each keeps its date, thread count and load average: on a shared
machine the load explains more than anything else why absolute times move; the ratios move much less).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import machine_info  # noqa: E402

HERE = Path(__file__).resolve().parent
# this order, those present; the *_cuda ones come from a GPU (benchmarks/gpu_check.sh's $OUT, copied here)
SECTIONS = ("ops_cpu", "ops_cuda", "model", "model_cuda", "opcount", "opcount_cuda", "proposals", "scaling",
            "compile", "data")


def table_rows(text: str) -> list[dict[str, str]]:
    """The rows of every markdown table in text, as {header: cell} dicts (tables with other headers mixed)."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(header, cells)))
    return rows


def ratio(row: dict[str, str]) -> float:
    return float(row["ratio (ours / tv)"])


def ops_target(text: str, device: str, limit: float) -> str:
    rows = [r for r in table_rows(text) if "ratio (ours / tv)" in r]
    over = [f"{r['op']} ({r['size']}) {ratio(r):.2f}x" for r in rows if ratio(r) > limit]
    verdict = "met" if not over else f"not met by {len(over)} of {len(rows)}: " + "; ".join(over)
    return f"| ops at most {limit:g}x torchvision.ops on {device} | worst {max(map(ratio, rows)):.2f}x | {verdict} |"


def model_targets(text: str, where: str = "") -> list[str]:
    """where: "" for the CPU's report, " on CUDA" for a GPU's."""
    rows = [r for r in table_rows(text) if r.get("mode") == "train step"]
    figures = ", ".join(f"{r['backbone']} batch {r.get('batch', '1')}: {ratio(r):.2f}x" for r in rows)
    slow = [r for r in rows if ratio(r) > 1.0]
    trips = ", ".join(sorted({f"ours {r['round-trips ours (python + hidden)']} vs torchvision {r['torchvision']}"
                              for r in rows if r.get("batch", "1") == "1"}))
    zero = all(r["round-trips ours (python + hidden)"] == "0 + 0" for r in rows)
    return [f"| training step at most 1.0x torchvision's{where} | {figures} | "
            f"{'met' if not slow else f'not met in {len(slow)} of {len(rows)}'} |",
            f"| zero host round-trips per training step{where} | {trips} | {'met' if zero else 'not met'} |"]


def graph_target(text: str) -> str:
    """Our CUDA-graph replay against torchvision's eager call, from bench_opcount's CUDA-graph table."""
    rows = [r for r in table_rows(text) if "ratio (graph / tv)" in r]
    name = "a CUDA-graph replay of ours at most 1.0x torchvision's eager call (issue 13)"
    if not rows:
        return f"| {name} | (no CUDA-graph table) | |"
    figures = ", ".join(f"{r['backbone']} {r['mode']} {r['ratio (graph / tv)']}"
                        + ("x" if r["ratio (graph / tv)"] != "-" else f" ({r['ours CUDA graph ms']})") for r in rows)
    over = [r for r in rows if r["ratio (graph / tv)"] == "-" or float(r["ratio (graph / tv)"]) > 1.0]
    return f"| {name} | {figures} | {'met' if not over else f'not met in {len(over)} of {len(rows)}'} |"


def proposals_target(text: str) -> str:
    line = next((line for line in text.splitlines() if line.startswith("- target, RPN proposals")), None)
    if line is None:
        return "| RPN proposals at least 100x faster than selective search | (no verdict line) | |"
    figures = line.split(":", 1)[1].strip()
    verdict = "met" if re.search(r"marginal \S+ \(met\)", figures) else "not met"
    return f"| RPN proposals at least 100x faster than selective search (fast) per image | {figures} | {verdict} |"


def opcount_target(text: str) -> str:
    """The verdict of bench_opcount's target line, judged again from its figures ('tiny train step 3.60x, ...')."""
    name = "dispatched aten ops at most 2x torchvision's per training step and per inference (issue 13)"
    line = next((line for line in text.splitlines() if line.startswith("- target, dispatched aten ops")), None)
    if line is None:
        return f"| {name} | (no verdict line) | |"
    figures = re.sub(r" \((not )?met\)$", "", line.split(":", 1)[1].strip())
    over = [f for f in figures.split(", ") if float(re.search(r"([\d.]+)x$", f).group(1)) > 2.0]
    verdict = "met" if not over else f"not met in {len(over)} of {len(figures.split(', '))}"
    return f"| {name} | {figures} | {verdict} |"


def targets(sections: dict[str, str]) -> list[str]:
    lines = ["| target (issue 8 unless named) | measured | verdict |", "|---|---|---|"]
    if "ops_cpu" in sections:
        lines.append(ops_target(sections["ops_cpu"], "CPU", 2.0))
    if "ops_cuda" in sections:
        lines.append(ops_target(sections["ops_cuda"], "CUDA", 1.5))
    if "model" in sections:
        lines += model_targets(sections["model"])
    if "model_cuda" in sections:
        lines += model_targets(sections["model_cuda"], " on CUDA")
    if "opcount" in sections:
        lines.append(opcount_target(sections["opcount"]))
    if "opcount_cuda" in sections:
        lines.append(graph_target(sections["opcount_cuda"]))
    if "proposals" in sections:
        lines.append(proposals_target(sections["proposals"]))
    return lines


def demote(text: str) -> str:
    """Each report's headings one level down, so they nest under RESULTS.md's title."""
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    sections = {name: (args.results / f"{name}.md").read_text() for name in SECTIONS
                if (args.results / f"{name}.md").is_file()}
    if not sections:
        parser.error(f"no results in {args.results}: run `make bench` (or each benchmarks/bench_*.py --out there)")
    device = torch.device("cpu")
    text = "\n".join(["# Benchmarks: frcnn_edu against torchvision and against selective search", "",
                      f"Written by `make bench` (benchmarks/report.py) from {', '.join(sections)}.", "",
                      *[re.sub(r", torch threads .*", " (each section gives its threads and load)", line)
                        for line in machine_info(device) if not line.startswith("- device")], "",
                      "## Targets", "", *targets(sections), "",
                      *[demote(sections[name]) for name in sections]])
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()

"""benchmarks/bench_ops.py runs end to end (tiny sizes) and writes its markdown table."""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ops.py"


def test_bench_ops_quick(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_ops", BENCH)
    bench_ops = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_ops", bench_ops)  # dataclasses look their module up there
    spec.loader.exec_module(bench_ops)
    out = tmp_path / "r.md"
    text = bench_ops.main(["--quick", "--out", str(out)])
    assert out.read_text() == text
    for op in ("nms", "batched_nms", "box_iou", "roi_pool fwd+bwd", "roi_align fwd"):
        assert f"| {op} |" in text, op
    assert "torch " in text and "CPU:" in text


def test_bench_model_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_model", BENCH.with_name("bench_model.py"))
    bench_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_model)
    text = bench_model.main(["--quick", "--backbones", "tiny", "--out", str(tmp_path / "m.md")])
    assert "| tiny | train step |" in text and "| tiny | inference |" in text
    train_row = next(line for line in text.splitlines() if "| tiny | train step |" in line)
    assert train_row.split("|")[7].strip() == "0 + 0"  # ours: no host round-trip in a training step

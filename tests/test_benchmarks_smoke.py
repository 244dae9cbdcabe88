"""benchmarks/bench_ops.py and bench_model.py run end to end (tiny sizes) and write their markdown tables."""


def test_bench_ops_quick(tmp_path, load_benchmark):
    bench_ops = load_benchmark("bench_ops")
    out = tmp_path / "r.md"
    text = bench_ops.main(["--quick", "--out", str(out)])
    assert out.read_text() == text
    for op in ("nms", "batched_nms", "box_iou", "roi_pool fwd+bwd", "roi_align fwd"):
        assert f"| {op} |" in text, op
    assert "torch " in text and "CPU:" in text


def test_bench_model_quick(tmp_path, load_benchmark):
    bench_model = load_benchmark("bench_model")
    text = bench_model.main(["--quick", "--backbones", "tiny", "--batches", "1,2", "--out", str(tmp_path / "m.md")])
    lines = text.splitlines()
    header = [cell.strip() for cell in next(line for line in lines if line.startswith("| backbone |")).split("|")]
    for batch in (1, 2):
        for mode in ("train step", "inference"):
            row = [cell.strip() for cell in next(line for line in lines if line.startswith(f"| tiny | {mode} |")
                                                  and line.split("|")[4].strip() == str(batch)).split("|")]
            ours_mb = next(i for i, name in enumerate(header) if name.startswith("ours MB"))
            for mb in row[ours_mb:ours_mb + 2]:  # peak memory of ours, then torchvision's
                assert float(mb.rstrip("*")) >= 0, row
            if mode == "train step":  # ours: no host round-trip in a training step
                assert row[header.index("round-trips ours (python + hidden)")] == "0 + 0", row

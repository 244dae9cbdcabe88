"""benchmarks/bench_proposals.py runs end to end (--quick: two small photos, tiny backbone, no training)."""


def test_bench_proposals_quick(tmp_path, load_benchmark):
    bench = load_benchmark("bench_proposals")
    out = tmp_path / "p.md"
    text = bench.main(["--quick", "--threads", "1", "--out", str(out)])
    assert out.read_text() == text
    assert text.startswith("# Proposals: selective search vs the RPN") and "CPU:" in text
    for row in ("| selective search, fast |", "| selective search, quality |", "| RPN, marginal | tiny",
                "| RPN, whole | tiny"):
        assert row in text, row
    assert "| built-in | selective search, fast |" in text and "| built-in | RPN, tiny, random weights" in text
    assert "recall@300 IoU 0.5" in text and "recall@2000 IoU 0.7" in text
    if bench.FIXTURE.is_dir():  # the real VOC photos: selective search rows, and the line on the missing RPN
        assert "| VOC photos | selective search, fast |" in text and "needs VOC-trained weights" in text

"""benchmarks/bench_scaling.py, bench_compile.py and bench_data.py run end to end (--quick: tiny sizes) and write
their results.

bench_compile's --quick compiles with backend="aot_eager" (Dynamo + AOTAutograd, no code generation): Inductor's
C++ compile of the whole model takes minutes on a CPU, too long for a smoke test.
"""


def rows(text: str, start: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith(start)]


def test_bench_scaling_quick(tmp_path, load_benchmark):
    out, png = tmp_path / "s.md", tmp_path / "s.png"
    text = load_benchmark("bench_scaling").main(["--quick", "--out", str(out), "--png", str(png)])
    assert out.read_text() == text and text.startswith("# ")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(rows(text, "| image size |")) == 4  # 2 sizes x (train step, inference)
    proposals = rows(text, "| proposals |")
    assert len(proposals) == 4
    kept = {float(row[2].split("(")[1].rstrip(")")) for row in proposals if row[3] == "train step"}
    assert len(kept) == 2, proposals  # the proposal count really varies along the scan
    for row in proposals:
        assert float(row[4]) > 0 and float(row[5]) > 0 and float(row[7].rstrip("*")) >= 0, row


def test_bench_compile_quick(tmp_path, load_benchmark):
    out = tmp_path / "c.md"
    text = load_benchmark("bench_compile").main(["--quick", "--out", str(out)])
    assert out.read_text() == text and text.startswith("# ")
    train = rows(text, "| ours | train step | 128x160 | aot_eager |")
    assert len(train) == 1 and train[0][4].startswith("1 / 0"), train  # one graph, no break: no host reads
    assert float(train[0][7]) > 0, train  # it compiled and ran
    assert rows(text, "| ours | inference | 128x160 | aot_eager |")
    assert rows(text, "| torchvision | train step | 128x160 | aot_eager |")
    cuda_graphs = rows(text, "| ours | train step | 128x160 | reduce-overhead |")
    assert "skipped" in cuda_graphs[0][-1], cuda_graphs  # --device cpu: no CUDA graphs


def test_bench_data_quick(tmp_path, load_benchmark):
    out = tmp_path / "d.md"
    text = load_benchmark("bench_data").main(["--quick", "--out", str(out)])
    assert out.read_text() == text and text.startswith("# ")
    table = rows(text, "| 40 |")
    assert [row[1] for row in table] == ["in memory", "from disk", "from disk, 1 worker", "from disk, 2 workers"]
    for row in table:
        assert float(row[2]) > 100 and float(row[3]) > 0, row  # a training process holds torch: > 100 MB

"""benchmarks/bench_opcount.py: its counter counts a known snippet exactly, and the script runs end to end (tiny
backbone, small image) and writes a table whose counts hold together."""
import re

import torch


def number(cell: str) -> int:
    """A table cell such as '1,655' as an int."""
    return int(cell.replace(",", ""))


def test_op_counter_counts_each_dispatched_op(load_benchmark):
    bench = load_benchmark("bench_opcount")
    with bench.OpCounter() as counter:
        torch.ones(3) + 1  # two aten ops: ones, then add (the Python int 1 is a scalar argument, not a tensor)
    assert counter.ops == {"aten.ones.default": 1, "aten.add.Tensor": 1}
    x = torch.ones(3, requires_grad=True)
    loss = (x * 2).sum()
    with bench.OpCounter() as counter:
        loss.backward()  # the backward's ops are dispatched too (sum's backward expands, mul's multiplies)
    assert counter.ops["aten.mul.Tensor"] == 1 and counter.ops["aten.expand.default"] == 1


def test_bench_opcount_quick(tmp_path, load_benchmark):
    bench = load_benchmark("bench_opcount")
    out = tmp_path / "opcount.md"
    text = bench.main(["--quick", "--backbones", "tiny", "--out", str(out)])
    assert out.read_text() == text
    rows = {mode: [cell.strip() for cell in line.strip("|").split("|")]
            for mode in ("train step", "inference")
            for line in text.splitlines() if line.startswith(f"| tiny | {mode} |")}
    assert set(rows) == {"train step", "inference"}, text
    for mode, row in rows.items():
        ours, theirs = number(row[3]), number(row[4])
        assert ours > 0 and theirs > 0, row
        assert float(row[5]) == round(ours / theirs, 2), row
    train = rows["train step"]
    for step, backward in ((train[3], train[6]), (train[4], train[7])):  # ours, then torchvision's
        assert 0 < number(backward) < number(step), train
    target = next(line for line in text.splitlines() if line.startswith("- target, dispatched aten ops"))
    assert f"tiny train step {float(train[5]):.2f}x" in target and re.search(r"\((not )?met\)$", target), target
    assert "| tiny | aten." in text  # the most frequent ops' table

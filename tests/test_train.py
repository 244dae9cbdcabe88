"""The trainer: exact resume after an interruption, the time budget, the run folder, and clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from frcnn_edu.data import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.train import InMemory, TrainArgs, Trainer, build_model, load_split, main

SMALL = {"min_size": 128, "max_size": 160}  # small inputs keep each step to tens of milliseconds


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_builtin_dataset(tmp_path_factory.mktemp("builtin"), seed=1, num_train=8, num_test=4)


def _args(voc_root, out, **changes) -> TrainArgs:
    args = TrainArgs(data="voc", root=str(voc_root), year="builtin", classes=BUILTIN_CLASSES, iterations=7,
                     batch_size=2, warmup=2, out=str(out), config=dict(SMALL))
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def _trainer(args) -> Trainer:
    torch.manual_seed(args.seed)
    data = InMemory(load_split(args, args.image_set))
    return Trainer(args, build_model(args, len(BUILTIN_CLASSES) + 1), data)


def _assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_interrupted_then_resumed_equals_uninterrupted(voc_root, tmp_path, monkeypatch):
    straight = _trainer(_args(voc_root, tmp_path / "straight"))
    straight.fit()

    interrupted = _trainer(_args(voc_root, tmp_path / "resumed"))
    original_step = Trainer.step

    def step_then_ctrl_c(self, batch, plan):  # Ctrl-C arrives during iteration 6, mid-epoch 2
        if self.iteration == 5:
            raise KeyboardInterrupt
        return original_step(self, batch, plan)

    monkeypatch.setattr(Trainer, "step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "step", original_step)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["iteration"] == 5

    resumed = _trainer(_args(voc_root, tmp_path / "resumed", resume=True))
    resumed.load()
    resumed.fit()
    assert resumed.iteration == straight.iteration == 7
    _assert_same_weights(straight.model, resumed.model)
    log = (tmp_path / "resumed" / "losses.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in log[1:]] == list(range(1, 8))  # one row per iteration, no repeats


def test_time_budget_ends_training_cleanly(voc_root, tmp_path):
    trainer = _trainer(_args(voc_root, tmp_path, iterations=10_000, time_budget=1e-9))
    trainer.fit()
    assert trainer.iteration == 1
    assert (tmp_path / "checkpoint.pt").exists()


def test_checkpoint_from_another_configuration_is_refused(voc_root, tmp_path):
    _trainer(_args(voc_root, tmp_path, iterations=1)).fit()
    other = _trainer(_args(voc_root, tmp_path, config={**SMALL, "min_size": 144}))
    with pytest.raises(ValueError, match="another configuration: config is"):
        other.load()


def test_command_line_run_writes_metrics_and_pictures(voc_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--data", "voc", "--root", str(voc_root), "--year", "builtin", "--classes",
                 ",".join(BUILTIN_CLASSES), "--iterations", "3", "--batch-size", "2", "--warmup", "1",
                 "--out", str(out), "--config", json.dumps(SMALL)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= 1.0 and metrics["iterations"] == 3 and metrics["test_images"] == 4
    assert set(metrics["ap"]) <= set(BUILTIN_CLASSES)
    for name in ("losses.png", "detections.png", "losses.csv", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("argv, message", [
    (["--data", "voc", "--root", "/nonexistent/VOCdevkit"], "is not a folder"),
    (["--data", "nope"], "--data must be 'builtin' or 'voc'"),
])
def test_bad_arguments_give_one_line_errors(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_empty_image_set_is_named(voc_root, tmp_path, capsys):
    (voc_root / "VOCbuiltin" / "ImageSets" / "Main" / "empty.txt").write_text("")
    assert main(["--data", "voc", "--root", str(voc_root), "--year", "builtin", "--classes",
                 ",".join(BUILTIN_CLASSES), "--image-set", "empty", "--out", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err

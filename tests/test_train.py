"""frcnn_edu.train: exact resume after an interruption, the time budget, the run folder, clear errors, and real
PASCAL VOC end to end (the shared fixture's images, with the subset tool's lists)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE, copy_fixture, needs_fixture

import frcnn_edu.model
import frcnn_edu.train
from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.instruments.syncs import HiddenSyncCounter, count_python_reads
from frcnn_edu.train import LOSS_NAMES, TrainArgs, Trainer, build_model, main
from frcnn_edu.training_data import InMemory, load_split
from frcnn_edu.voc import VOC_CLASSES
from frcnn_edu.voc_subset import subset

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

    def step_then_ctrl_c(self, images, targets):  # Ctrl-C arrives during iteration 6, mid-epoch 2
        if self.iteration == 5:
            raise KeyboardInterrupt
        return original_step(self, images, targets)

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


def test_steps_read_nothing_and_fit_reads_the_losses_in_groups(voc_root, tmp_path, monkeypatch):
    """On a GPU a host read waits for every queued kernel. A training step reads nothing: the targets' values are
    checked on the host, before the copy, and not again by the model. fit reads the losses of LOSS_READ_EVERY
    steps at once, and at each epoch's end (the checkpoint's) and the last step; the log keeps every step's own."""
    monkeypatch.setattr(frcnn_edu.train, "LOSS_READ_EVERY", 3)
    host_checks = []
    monkeypatch.setattr(frcnn_edu.train, "check_values", lambda targets, num_classes: host_checks.append(len(targets)))

    def checked_on_the_device(targets, num_classes):
        raise AssertionError("the model read its targets' values on the device")

    monkeypatch.setattr(frcnn_edu.model, "check_values", checked_on_the_device)
    trainer = _trainer(_args(voc_root, tmp_path, iterations=13, batch_size=1))  # 8 images: epochs of 8 steps
    step, read = Trainer.step, Trainer.read_losses
    returned, reads = {}, []

    def counted_step(self, images, targets):
        with count_python_reads() as calls, HiddenSyncCounter() as hidden:
            losses = step(self, images, targets)
        assert calls == [] and hidden.ops == [], (calls, hidden.ops)
        returned[self.iteration] = losses.tolist()
        return losses

    def spied_read(self, pending, log):
        reads.append([iteration for iteration, *_ in pending])
        mean = read(self, pending, log)  # the progress bar's figure: the mean of the steps read
        expected = torch.tensor([returned[i] for i in reads[-1]]).mean(dim=0).tolist()
        assert list(mean) == list(LOSS_NAMES) and list(mean.values()) == pytest.approx(expected, rel=1e-6)
        return mean

    monkeypatch.setattr(Trainer, "step", counted_step)
    monkeypatch.setattr(Trainer, "read_losses", spied_read)
    trainer.fit()
    assert host_checks == [1] * 13 and trainer.model.check_inputs  # the model's own check is back on after a step
    assert reads == [[1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11], [12, 13]]
    rows = [row.split(",") for row in (tmp_path / "losses.csv").read_text().splitlines()]
    assert rows[0][3:] == list(LOSS_NAMES) and [int(row[0]) for row in rows[1:]] == list(range(1, 14))
    for row in rows[1:]:
        assert [float(value) for value in row[3:]] == pytest.approx(returned[int(row[0])], abs=1e-5)


def test_bad_training_target_is_named_before_it_leaves_the_host(voc_root, tmp_path):
    trainer = _trainer(_args(voc_root, tmp_path))
    targets = [dict(boxes=torch.tensor([[10.0, 10, 50, 50]]), labels=torch.tensor([len(BUILTIN_CLASSES) + 1]))]
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\]\[0\] = 4: expected 1..3"):
        trainer.step([torch.rand(3, 64, 64)], targets)
    assert trainer.iteration == 0


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
    assert 0.0 <= metrics["map_coco"] <= metrics["ap50"] <= 1.0 and metrics["world_size"] == 1
    for name in ("losses.png", "detections.png", "losses.csv", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "detections.json").read_text())  # COCO results: one entry per detection
    assert all(set(r) >= {"image_id", "category_id", "bbox", "score"} for r in results)
    # TensorBoard's event files, read back: a loss per iteration, the evaluation, the detections picture
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2, 3]
    assert events.Scalars("eval/map")[-1].value == pytest.approx(metrics["map"])
    assert events.Tags()["images"] == ["detections"]


@pytest.mark.parametrize("argv, message", [
    (["--data", "voc", "--root", "/nonexistent/VOCdevkit"], "is not a folder"),
    (["--data", "nope"], "--data must be 'builtin', 'voc' or 'coco'"),
    (["--data", "coco"], "--data coco needs --annotations FILE.json and --images FOLDER"),
    (["--data", "builtin", "--amp-dtype", "half"], "--amp-dtype must be auto, bfloat16 or float16"),
    (["--data", "voc", "--root", str(FIXTURE), "--year", "2007+"], "--year must be years joined by '+'"),
    (["--data", "voc", "--root", str(FIXTURE), "--year", "2007+1999"], "VOC1999"),
])
def test_bad_arguments_give_one_line_errors(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_empty_image_set_is_named(voc_root, tmp_path, capsys):
    (voc_root / "VOCbuiltin" / "ImageSets" / "Main" / "empty.txt").write_text("")
    assert main(["--data", "voc", "--root", str(voc_root), "--year", "builtin", "--classes",
                 ",".join(BUILTIN_CLASSES), "--image-set", "empty", "--out", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err


# ---- Real PASCAL VOC end to end: a few training iterations on the fixture's real images, then the evaluation files.
# Through main, as `frcnn-edu train --data voc ...` runs it, for the VOC2007 layout (trainval -> test), the VOC2012
# layout (a test part held out by voc_subset) and a class subset. Tiny backbone, random init (no download), small
# images: seconds each on a CPU.

VOC_SMALL = ["--backbone", "tiny", "--no-pretrained", "--config", '{"min_size": 160, "max_size": 256}',
             "--iterations", "4", "--batch-size", "2", "--warmup", "2", "--device", "cpu"]


def check_run(out: Path, classes: set[str]) -> dict:
    """metrics.json well formed (mAPs in [0, 1], one AP per class with test boxes, by name) and the pictures."""
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= 1.0 and 0.0 <= metrics["map_area"] <= 1.0, metrics
    assert set(metrics["ap"]) == classes and all(0.0 <= ap <= 1.0 for ap in metrics["ap"].values()), metrics["ap"]
    assert metrics["iterations"] == 4 and metrics["backbone"] == "tiny"
    for picture in ("losses.png", "detections.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
    assert len((out / "losses.csv").read_text().splitlines()) == 1 + 4  # header and one row per iteration
    return metrics


@needs_fixture
def test_voc2007_trainval_to_test(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data", "voc", "--root", str(FIXTURE), "--year", "2007", "--image-set", "trainval",
                 "--test-set", "test", "--out", str(out), *VOC_SMALL]) == 0, capsys.readouterr().err
    metrics = check_run(out, {"dog", "person", "train", "sofa", "chair", "car"})  # the classes in 000001-000005
    assert metrics["test_images"] == 5 and metrics["train_images"] == 5


@needs_fixture
def test_voc2007_plus_2012_trains_on_both_tests_on_2007(tmp_path, capsys):
    """The paper's "07+12": VOC2007 trainval + VOC2012 trainval, tested on VOC2007 test."""
    out = tmp_path / "run"
    assert main(["--data", "voc", "--root", str(FIXTURE), "--year", "2007+2012", "--image-set", "trainval",
                 "--test-set", "test", "--out", str(out), *VOC_SMALL]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 5 + 5 and metrics["test_images"] == 5


@needs_fixture
def test_own_data_in_coco_layout(tmp_path, capsys):
    """README "Train on your own data", the worked example: the fixture's VOC2007 sets written as COCO files
    (voc_to_coco), then trained and evaluated with --data coco; the results file carries the COCO file's ids."""
    from frcnn_edu.coco import voc_to_coco
    from frcnn_edu.voc import VOCDataset

    for image_set in ("trainval", "test"):
        voc = VOCDataset(FIXTURE, year="2007", image_set=image_set)
        (tmp_path / f"{image_set}.json").write_text(json.dumps(voc_to_coco(voc)))
    photos, out = FIXTURE / "VOC2007" / "JPEGImages", tmp_path / "run"
    assert main(["--data", "coco", "--annotations", str(tmp_path / "trainval.json"), "--images", str(photos),
                 "--test-annotations", str(tmp_path / "test.json"), "--out", str(out), *VOC_SMALL]) == 0, \
        capsys.readouterr().err
    metrics = check_run(out, {"dog", "person", "train", "sofa", "chair", "car"})
    assert metrics["test_images"] == 5 and metrics["train_images"] == 5
    test_ids = {image["id"] for image in json.loads((tmp_path / "test.json").read_text())["images"]}
    assert {r["image_id"] for r in json.loads((out / "detections.json").read_text())} <= test_ids


@needs_fixture
def test_voc2012_with_a_held_out_test_part(tmp_path, capsys):
    devkit = copy_fixture(tmp_path) / "VOCdevkit"
    (devkit / "VOC2012" / "ImageSets" / "Main" / "test.txt").unlink()  # the real VOC2012 has no test list
    lists = subset(devkit, VOC_CLASSES, "all", max_images=3, max_test=2, year="2012")
    assert "held out" in lists["test_source"]
    out = tmp_path / "run"
    assert main(["--data", "voc", "--root", str(devkit), "--year", "2012", "--image-set", "all_trainval",
                 "--test-set", "all_test", "--out", str(out), *VOC_SMALL]) == 0, capsys.readouterr().err
    test_ids = lists["test"].read_text().split()
    classes = {VOC_CLASSES[i] for i in range(20) if lists["counts"]["test"][VOC_CLASSES[i]]}
    metrics = check_run(out, classes)
    assert metrics["test_images"] == len(test_ids) == 2 and metrics["train_images"] == 3


@needs_fixture
def test_class_subset_trains_on_its_classes_only(tmp_path, capsys):
    devkit = copy_fixture(tmp_path) / "VOCdevkit"
    subset(devkit, ["car", "chair"], "cc", max_images=3, max_test=3)  # 000003 also holds a sofa
    out = tmp_path / "run"
    status = main(["--data", "voc", "--root", str(devkit), "--year", "2007", "--classes", "car,chair",
                   "--image-set", "cc_trainval", "--test-set", "cc_test", "--out", str(out), *VOC_SMALL])
    err = capsys.readouterr().err
    assert status == 0, err
    check_run(out, {"car", "chair"})


def test_float16_autocast_trains_with_a_gradient_scaler(voc_root, tmp_path):
    """--amp-dtype float16 (the default on GPUs without bfloat16, e.g. a T4): autocast in float16, RoIAlign
    included (its adaptive grid once overflowed float16), and a gradient scaler whose state the checkpoint keeps."""
    trainer = _trainer(_args(voc_root, tmp_path / "fp16", amp_dtype="float16", iterations=3))
    assert trainer.scaler.is_enabled()
    trainer.fit()
    losses = (tmp_path / "fp16" / "losses.csv").read_text().splitlines()[1:]
    assert len(losses) == 3 and all(math.isfinite(float(v)) for row in losses for v in row.split(",")[3:])
    state = torch.load(tmp_path / "fp16" / "checkpoint.pt", weights_only=False)
    assert state["scaler"]["scale"] > 0 and state["iteration"] == 3
    assert not _trainer(_args(voc_root, tmp_path / "bf16", iterations=3)).scaler.is_enabled()  # bfloat16: none

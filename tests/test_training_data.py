"""frcnn_edu.training_data: images from disk and from memory are the same pixels; DataLoader workers give the same
batches in the same order; so a run trains to the same weights whichever reads its images."""
from __future__ import annotations

import pytest
import torch

from frcnn_edu.builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from frcnn_edu.train import TrainArgs, Trainer, build_model
from frcnn_edu.training_data import FromDisk, InMemory, epoch_plan, planned_batches, read_pixels
from frcnn_edu.voc import VOCDataset, load_image


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = make_builtin_dataset(tmp_path_factory.mktemp("builtin"), seed=2, num_train=8, num_test=2)
    return VOCDataset(root, year="builtin", image_set="trainval", classes=BUILTIN_CLASSES)


def test_read_pixels_are_load_image_in_uint8(split):
    path = split.image_path(split.ids[0])
    pixels = read_pixels(path)
    assert pixels.dtype == torch.uint8 and pixels.shape[0] == 3
    assert torch.equal(pixels, (load_image(path) * 255).round().to(torch.uint8))


def test_from_disk_and_in_memory_give_the_same_items(split):
    disk, memory = FromDisk(split), InMemory([split])
    assert len(disk) == len(memory) == 8 and disk.ids == memory.ids == split.ids
    zoom = torch.tensor([0.3, 0.6, 0.2])
    for index in range(len(disk)):
        for flip, crop in ((False, None), (True, zoom)):
            (a, ta), (b, tb) = disk.get(index, flip, torch.device("cpu"), crop), memory.get(index, flip, "cpu", crop)
            assert torch.equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ("boxes", "labels"))


def test_workers_give_the_same_batches_in_order(split):
    images = FromDisk(split)
    plan = epoch_plan(len(images), 2, seed=0, epoch=3, flip=True, zoom=0.5)
    here = list(planned_batches(images, plan, plan.batches, workers=0))
    there = list(planned_batches(images, plan, plan.batches, workers=2))
    assert len(here) == len(there) == 4
    for (a, ta), (b, tb) in zip(here, there):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb))


def test_a_run_trains_to_the_same_weights_from_disk_with_workers(split, tmp_path):
    def trained(images, workers: int):
        args = TrainArgs(data="voc", root=str(split.root), year="builtin", classes=BUILTIN_CLASSES, iterations=4,
                         batch_size=2, warmup=1, workers=workers, out=str(tmp_path / f"run{workers}"),
                         config={"min_size": 128, "max_size": 160})
        torch.manual_seed(0)
        trainer = Trainer(args, build_model(args, len(BUILTIN_CLASSES) + 1), images)
        trainer.fit()
        return trainer.model.state_dict()

    memory, disk = trained(InMemory(split), 0), trained(FromDisk(split), 2)
    for name, value in memory.items():
        assert torch.equal(value, disk[name]), name


def test_difficult_objects_are_left_out_of_training_targets(split):
    images = FromDisk(split)
    images.targets = [dict(t) for t in images.targets]
    first = images.targets[0]
    first["difficult"] = torch.zeros_like(first["difficult"])
    first["difficult"][0] = True  # the first object now difficult (a crowd region, in COCO's terms)
    _, target = images.get(0, False, torch.device("cpu"))
    assert torch.equal(target["boxes"], first["boxes"][1:]) and torch.equal(target["labels"], first["labels"][1:])

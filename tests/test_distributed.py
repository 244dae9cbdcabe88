"""frcnn_edu.distributed: torchrun with 2 CPU processes (the Gloo backend) trains as one process does.

Two runs of the same recipe: 1 process x 4 images per step, and torchrun with 2 processes x 2 images. For the
updates to agree to float tolerance, everything that could tell them apart is fixed: batch norm frozen (its
batch statistics would come from 2 images instead of 4), images of one size (a batch is zero-padded to its
largest image), no autocast, and the samplers' random keys replaced by a fixed function of the candidate's
position (each process draws from its own random stream). What is left is the method: DistributedDataParallel's
gradient average over the ranks equals the gradient of the 4-image loss, because each rank's loss is a mean over
the same number of sampled anchors and RoIs per image.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_edu import distributed
from frcnn_edu.distributed import World

SIZE = 128  # every image 128 x 128 px
CLASSES = ("square", "bar")

TRAIN_SCRIPT = """
import json, sys
import torch
import frcnn_edu.sampling
from torchvision.ops.misc import FrozenBatchNorm2d
from frcnn_edu import distributed
from frcnn_edu.train import TrainArgs, Trainer, build_model
from frcnn_edu.training_data import InMemory, load_split

rand = torch.rand
def fixed_keys(*shape, generator=None, **kwargs):  # the samplers' keys: a fixed function of the position
    if generator is not None:
        return rand(*shape, generator=generator, **kwargs)
    size = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
    position = torch.arange(size[-1], dtype=torch.float64)
    keys = torch.frac(torch.sin(position * 12.9898 + 1) * 43758.5453).float()
    return keys.expand(*size).to(kwargs.get("device") or "cpu").contiguous()
if sys.argv[5] == "fixed-keys":
    torch.rand = fixed_keys

def freeze_batch_norm(module):
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)

data, out, stop_after, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]) or None, sys.argv[4] == "resume"
world, device = distributed.join("cpu")
args = TrainArgs(data="coco", annotations=f"{data}/train.json", images=f"{data}/images", iterations=5,
                 batch_size=4, warmup=1, lr=0.01, zoom=0.0, amp=False, out=out, resume=resume,
                 config={"min_size": 128, "max_size": 128})
torch.manual_seed(0)
model = build_model(args, 3)
freeze_batch_norm(model)
trainer = Trainer(args, model, InMemory(load_split(args, args.image_set)), world, device)
torch.save(model.state_dict(), f"{out}/weights_start.pt")
if resume:
    trainer.load()
trainer.fit(stop_after)
torch.save(model.state_dict(), f"{out}/weights_rank{world.rank}.pt")
distributed.leave(world)
"""


def make_coco_set(folder: Path, count: int = 8) -> Path:
    """`count` images of SIZE x SIZE px with one or two filled shapes each, and their COCO-format JSON."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for index in range(count):
        pixels = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
        for label in (1, 2)[: 1 + index % 2]:
            x, y = rng.integers(5, 60, 2)
            w, h = (int(rng.integers(30, 60)),) * 2 if label == 1 else (int(rng.integers(40, 60)), 16)
            pixels[y : y + h, x : x + w] = (220, 60, 60) if label == 1 else (60, 220, 60)
            annotations.append(dict(id=len(annotations) + 1, image_id=index, category_id=label,
                                    bbox=[int(x), int(y), w, h], area=w * h, iscrowd=0))
        Image.fromarray(pixels).save(folder / "images" / f"{index:03d}.png")
        images.append(dict(id=index, file_name=f"{index:03d}.png", width=SIZE, height=SIZE))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
    path = folder / "train.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return folder


def train(data: Path, out: Path, processes: int, stop_after: int = 0, resume: bool = False,
          fixed_keys: bool = True) -> list[dict]:
    """Runs TRAIN_SCRIPT (5 iterations, or `stop_after` of them) in 1 process, or under torchrun in `processes`;
    returns the starting weights, then each rank's at the end. fixed_keys: the samplers' keys a fixed function
    (otherwise each rank's random stream)."""
    script = out.parent / f"{out.name}_train.py"
    script.write_text(TRAIN_SCRIPT)
    arguments = [str(script), str(data), str(out), str(stop_after), "resume" if resume else "fresh",
                 "fixed-keys" if fixed_keys else "random-keys"]
    if processes == 1:
        command = [sys.executable, *arguments]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"weights_{r}.pt") for r in ["start", *(f"rank{r}" for r in range(processes))]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same recipe trained for 3 of its 5 steps by 1 process and by 2 (torchrun, Gloo)."""
    folder = tmp_path_factory.mktemp("distributed")
    data = make_coco_set(folder / "data")
    return folder, data, train(data, folder / "one", 1, stop_after=3), train(data, folder / "two", 2, stop_after=3)


def test_two_ranks_hold_identical_weights(runs):
    _, _, _, (_, rank0, rank1) = runs
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name


def test_two_ranks_of_two_images_update_as_one_process_of_four(runs):
    _, _, (start, one), (start_two, two, _) = runs
    moved = 0
    for name, value in start.items():
        assert torch.equal(start_two[name], value), name  # the same initial weights
        if value.is_floating_point():
            update_one, update_two = one[name] - value, two[name] - value
            assert torch.allclose(update_two, update_one, rtol=1e-3, atol=1e-7), name
            moved += bool(update_one.abs().max() > 1e-6)
    assert moved > 10  # the updates compared are real ones (3 SGD steps move most tensors)


def test_resume_across_ranks_is_exact(runs):
    """2 processes: 3 steps, then the other 2 from the checkpoint, equal 5 steps straight (every rank's random
    state is in the checkpoint); the log holds the 5 iterations once each."""
    folder, data, _, _ = runs
    straight = train(data, folder / "straight", 2, fixed_keys=False)
    train(data, folder / "resumed", 2, stop_after=3, fixed_keys=False)
    resumed = train(data, folder / "resumed", 2, resume=True, fixed_keys=False)
    for name, value in straight[1].items():
        assert torch.equal(value, resumed[1][name]), name
    rows = (folder / "resumed" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5]


def test_the_batch_must_divide_across_ranks():
    with pytest.raises(ValueError, match="--batch-size 3 does not divide across 2 processes"):
        distributed.check_batch(3, World(rank=0, size=2))
    distributed.check_batch(4, World(rank=1, size=2))


def test_a_rank_takes_every_other_image_of_a_batch():
    assert distributed.shard([7, 3, 5, 1], World(0, 2)) == [7, 5]
    assert distributed.shard([7, 3, 5, 1], World(1, 2)) == [3, 1]
    assert distributed.shard([7, 3, 5, 1], World()) == [7, 3, 5, 1]

"""Training on several processes with PyTorch's own engine: torchrun and DistributedDataParallel.

    torchrun --nproc_per_node=4 -m frcnn_edu.train --device cuda --batch-size 8 ...   # 4 GPUs, 2 images each

torchrun starts one process per GPU (or per CPU worker) and tells each its RANK, LOCAL_RANK and WORLD_SIZE. Every
process builds the same model from the same seed; DistributedDataParallel broadcasts rank 0's weights at the start
and averages the gradients in the backward, so the weights stay identical. The ranks share one epoch plan (its
batches of --batch-size images, the total batch) and rank r takes images r, r + W, r + 2W, ... of each batch: the
same images, flips and crops as one process would use. Backends: NCCL between GPUs, Gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank in 0..size-1 (0 writes files), size."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def join(device: str) -> tuple[World, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL for CUDA, Gloo otherwise) and pick this process's
    device: cuda:LOCAL_RANK for --device cuda. One process: World(0, 1) and the device as given."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), torch.device(device)
    cuda = torch.device(device).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return World(dist.get_rank(), size), torch.device("cuda", local)
    return World(dist.get_rank(), size), torch.device(device)


def leave(world: World) -> None:
    """Close the process group (so torchrun's processes exit cleanly)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size: int, world: World) -> None:
    """ValueError unless the total batch splits evenly across the ranks."""
    if batch_size % world.size:
        raise ValueError(f"--batch-size {batch_size} does not divide across {world.size} processes (torchrun "
                         f"--nproc_per_node): the batch is the total over all of them, use a multiple of {world.size}")


def shard(batch: list[int], world: World) -> list[int]:
    """This rank's images of a batch: every world.size-th, from its rank."""
    return batch[world.rank :: world.size]


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """values (any shape, on the rank's device) averaged elementwise over the ranks, unread: for the log, so that
    every rank writes the same numbers."""
    if world.size == 1:
        return values
    total = values.to(torch.float64, copy=True)  # a copy even of float64 values: all_reduce sums in place
    dist.all_reduce(total)
    return total / world.size


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True when the flag is True on some rank: a decision (stop on the time budget) every rank takes together."""
    if world.size == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(obj, world: World) -> list:
    """obj from every rank, in rank order, on every rank (here: the random-number states, for the checkpoint)."""
    if world.size == 1:
        return [obj]
    objects = [None] * world.size
    dist.all_gather_object(objects, obj)
    return objects


def barrier(world: World) -> None:
    """Wait for every rank (while rank 0 evaluates and writes the run's files)."""
    if world.size > 1:
        dist.barrier()

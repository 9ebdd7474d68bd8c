"""Data-parallel training over processes started by torchrun, on PyTorch's DistributedDataParallel.

`torchrun --nproc-per-node N -m cnnlab train ...` starts N copies of cnnlab; each reads its rank
from the environment torchrun sets, joins the process group (NCCL on CUDA, gloo on CPU), trains on
its own shard of every epoch, and all-reduces gradients (DDP) and metrics (here). Rank 0 alone
writes the run folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import CnnlabError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes; one process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_environment() -> Ranks:
    """The ranks torchrun (or any env:// launcher) put in the environment."""
    try:
        return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)),
                     int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))))
    except ValueError:
        raise CnnlabError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers "
                          "(torchrun sets them)") from None


def join(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group; each rank on a GPU takes the one its local rank names."""
    if not ranks.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise CnnlabError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), not "
                          f"{device.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def leave(ranks: Ranks) -> None:
    if ranks.enabled and dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str:
    return dist.get_backend() if dist.is_initialized() else "none"


def shard(order: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's share of an epoch's order. Like DistributedSampler, the order is padded by
    repeating its start so that every rank takes the same number of steps (DDP needs that)."""
    if not ranks.enabled:
        return order
    total = math.ceil(len(order) / ranks.world_size) * ranks.world_size
    repeats = math.ceil(total / len(order))
    padded = order.repeat(repeats)[:total]
    return padded[ranks.rank::ranks.world_size]


def local_batch_size(batch_size: int, ranks: Ranks) -> int:
    """--batch-size is the global batch (as in Ultralytics), so a recipe's learning rate holds
    whatever the number of processes; each rank takes its share."""
    if batch_size % ranks.world_size:
        raise CnnlabError(f"--batch-size {batch_size} does not split evenly over "
                          f"{ranks.world_size} processes")
    return batch_size // ranks.world_size


def summed(values: list[torch.Tensor | float], ranks: Ranks, device: torch.device) -> list[float]:
    """Each value summed over every rank (itself, with one process)."""
    stacked = torch.tensor([float(value) for value in values], dtype=torch.float64, device=device)
    if ranks.enabled:
        dist.all_reduce(stacked)
    return stacked.tolist()


def all_finite(loss: torch.Tensor, ranks: Ranks) -> bool:
    """Whether the loss is finite on every rank: all ranks must stop at the same step, or the
    ones still going would wait for the others in the next all-reduce."""
    return summed([not torch.isfinite(loss.detach()).item()], ranks, loss.device)[0] == 0


def from_main(value: object, ranks: Ranks) -> object:
    """Rank 0's value of a picklable object, on every rank."""
    if not ranks.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(module: nn.Module, ranks: Ranks) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics). DDP broadcasts them at
    the start of each forward pass, but each rank's own batches move them afterwards; validation
    must see the model that rank 0 saves."""
    if ranks.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def data_parallel(module: nn.Module, ranks: Ranks, device: torch.device,
                  some_frozen: bool) -> nn.Module:
    """The module wrapped in DistributedDataParallel (the module itself with one process).
    `some_frozen`: parameters that get no gradient in some epochs (a frozen first phase)."""
    if not ranks.enabled:
        return module
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=some_frozen)

"""Scaling a run out with torchrun: which process this is, its device, its share of the work.

``torchrun --nproc-per-node N -m vlx explain --data ...`` (and ``--nnodes`` /
``--rdzv-endpoint`` for several machines) starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set. Each binds its own device (``cuda:LOCAL_RANK`` where CUDA is asked for,
else the CPU), joins one process group (NCCL on GPUs, gloo on CPUs) and takes every
``WORLD_SIZE``-th item from its ``RANK`` on: disjoint shards that together are the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Self

import torch

from vlx.errors import InputError


@dataclass(frozen=True)
class Rank:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local`` on its
    machine."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> list[int]:
        """This process's positions among ``count`` items."""
        return list(range(self.rank, count, self.world))


def current_rank() -> Rank:
    """The rank torchrun gave this process (a single process where it gave none)."""
    if "WORLD_SIZE" not in os.environ:
        return Rank()
    try:
        return Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                    int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError) as err:
        raise InputError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK are not numbers: {err}") from None


def rank_device(rank: Rank, device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA run of several processes, else ``device``."""
    if rank.world > 1 and device.type == "cuda":
        return torch.device("cuda", rank.local)
    return device


class ProcessGroup:
    """The run's process group for the duration of a block (nothing for a single process)."""

    def __init__(self, rank: Rank, device: torch.device) -> None:
        self.rank, self.device = rank, device

    def __enter__(self) -> Self:
        if self.rank.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend, rank=self.rank.rank, world_size=self.rank.world)
        return self

    def barrier(self) -> None:
        if self.rank.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def __exit__(self, *exc_info: object) -> None:
        if self.rank.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

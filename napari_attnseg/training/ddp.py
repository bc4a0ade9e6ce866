"""Data-parallel training under ``torchrun`` (DistributedDataParallel), and nothing at all otherwise.

``torchrun --nproc_per_node=N -m napari_attnseg.cli train ...`` starts N processes with ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` set; each takes GPU ``LOCAL_RANK`` (NCCL), or the CPU (gloo) when there is no
GPU. Every process samples its own patches (seed + rank), gradients are averaged by DDP, and rank 0
alone validates, writes the checkpoint, the log and the state, and decides when to stop (its
decisions are broadcast). With ``WORLD_SIZE`` unset or 1 the trainer runs exactly as on one device.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..devices import resolve_device
from ..errors import InputError


@dataclass
class Distributed:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, net: nn.Module) -> nn.Module:
        """DDP around ``net`` (which must compute the loss in its ``forward``), or ``net`` itself."""
        if not self.enabled:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # some heads (e.g. deep supervision switched off, frozen parts) may see no gradient in a step
        return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (stop flags, validation Dice, the planned epochs)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str = "auto") -> Distributed:
    """Read torchrun's environment; join the process group when ``WORLD_SIZE`` > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        try:
            return Distributed(device=resolve_device(device))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = (device or "auto").lower()
    if want in ("auto", "cuda") and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise InputError(f"torchrun started local rank {local} but this machine has {torch.cuda.device_count()} GPU(s).")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif want in ("auto", "cpu"):
        dev, backend = torch.device("cpu"), "gloo"
    else:
        raise InputError(f"Distributed training runs on CUDA GPUs or on the CPU, not on {device!r}.")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        owns = True
    return Distributed(world, rank, local, dev, owns)

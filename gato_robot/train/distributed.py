"""Data-parallel training under `torchrun` (PyTorch's own torch.distributed; Gato itself trained on
TPU pods with data parallelism): one process per device, gloo on CPU, NCCL on CUDA.

`gato-robot train` (and `train-baseline`, `finetune`) runs unchanged under
``torchrun --nproc-per-node N`` (and multi-node ``--nnodes``/rendezvous): ``config.batch_size``
stays the *global* batch, each rank computes the gradient of its shard of it
(:meth:`EpisodeWindows.batch` rows), DistributedDataParallel averages them, and every rank takes
the same optimizer step. So the loss curve and weights equal a
single-process run of the same global batch (shards of equal token counts, as one-timestep
windows have), and a checkpoint written at one world size resumes at another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this join initialized the process group (and leaving destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, batch_size: int) -> range:
        """This rank's rows of a global batch (contiguous, equal sizes)."""
        if batch_size % self.world_size:
            raise ValueError(f"the global batch ({batch_size}) must be a multiple of the number of processes "
                             f"({self.world_size})")
        per_rank = batch_size // self.world_size
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def device(self, requested: str) -> torch.device:
        """The device of this rank: ``cuda`` becomes ``cuda:<local_rank>``."""
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all ranks (every rank gets it)."""
        if not self.distributed:
            return float(value.detach())
        reduced = value.detach().clone().float()
        dist.all_reduce(reduced)
        return float(reduced) / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def join_cluster(device: str) -> Cluster:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT); a plain process is a job of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Cluster()
    owns_group = not dist.is_initialized()
    cluster = Cluster(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")), owns_group)
    if owns_group:
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(cluster.local_rank)
        dist.init_process_group(backend)
    return cluster


def leave_cluster(cluster: Cluster) -> None:
    """Destroy the process group if :func:`join_cluster` created it (a caller's own group stays)."""
    if cluster.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """The policy's loss as a forward pass, so DistributedDataParallel sees the computation that
    produces the gradients it averages (its hooks are prepared in ``forward``): ``forward(*inputs)``
    is ``policy.loss(*inputs)``, whatever the policy's loss takes (Gato a batch dict, BC-IMP images,
    proprioception and actions)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, *inputs):
        return self.policy.loss(*inputs)


def data_parallel(policy: torch.nn.Module, cluster: Cluster) -> torch.nn.Module:
    """A module whose forward(batch) is the loss: DDP-wrapped across ranks, plain otherwise."""
    module = LossModule(policy)
    if not cluster.distributed:
        return module
    device = next(policy.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

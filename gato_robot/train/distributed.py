"""Data-parallel training under `torchrun` (PyTorch's own torch.distributed; Gato itself trained on
TPU pods with data parallelism): one process per device, gloo on CPU, NCCL on CUDA.

`gato-robot train` (and `train-baseline`, `finetune`) runs unchanged under
``torchrun --nproc-per-node N`` (and multi-node ``--nnodes``/rendezvous): ``config.batch_size``
stays the *global* batch, each rank computes the gradient of its shard of it
(:meth:`EpisodeWindows.batch` rows), DistributedDataParallel averages them, and every rank takes
the same optimizer step. So the loss curve and weights equal a
single-process run of the same global batch (shards of equal token counts, as one-timestep
windows have), and a checkpoint written at one world size resumes at another.

With ``sharding="fsdp"`` (for the 364M and 1.18B presets, whose weights, gradients and AdamW
state outgrow one device) the policy is sharded across ranks by FSDP2 (``fully_shard``: one unit
per transformer block, the embeddings and heads in the root unit) instead of replicated by DDP.
The arithmetic is the same (gradients of the global batch, averaged); checkpoints are gathered
into full state dicts, so a sharded run resumes unsharded or at another world size and deploys as
any other checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

SHARDINGS = ("ddp", "fsdp")
"""How ranks hold the policy: replicated (DistributedDataParallel) or sharded (FSDP2)."""


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


def shard_policy(policy: torch.nn.Module) -> None:
    """Shard ``policy`` in place across the ranks (FSDP2): each of its ``blocks`` one unit, the rest
    the root unit. ``loss`` is registered as a forward method, so calling it gathers the root's
    parameters as ``forward`` would. Build the optimizer after this (it must see the shards)."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for block in policy.blocks:
        fully_shard(block)
    fully_shard(policy)
    register_fsdp_forward_method(policy, "loss")


def data_parallel(policy: torch.nn.Module, cluster: Cluster, sharded: bool = False) -> torch.nn.Module:
    """A module whose forward(batch) is the loss: DDP-wrapped across ranks, plain otherwise (and
    when ``sharded``: FSDP2 already reduces the gradients of the policy :func:`shard_policy` made)."""
    module = LossModule(policy)
    if not cluster.distributed or sharded:
        return module
    device = next(policy.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


_FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather_weights(policy: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """The policy's full weights: on every rank when replicated; when sharded a collective call that
    every rank makes, and rank 0 alone receives them (the others an empty dict)."""
    return get_model_state_dict(policy, options=_FULL_ON_RANK0) if sharded else policy.state_dict()


def gather_optimizer_state(policy: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """The optimizer state to checkpoint; sharded, gathered as :func:`gather_weights` (keyed by
    parameter name, which any world size loads back)."""
    return get_optimizer_state_dict(policy, optimizer, options=_FULL_ON_RANK0) if sharded else optimizer.state_dict()


def load_optimizer_state(policy: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict, sharded: bool) -> None:
    """Load a checkpointed optimizer state, written replicated (keyed by parameter index) or sharded
    (keyed by parameter name), into this run's optimizer, replicated or sharded."""
    by_name = any(isinstance(key, str) for key in saved["state"])
    if not sharded:
        if by_name:
            set_optimizer_state_dict(policy, optimizer, saved)
        else:
            optimizer.load_state_dict(saved)
        return
    if not by_name:
        saved = _keyed_by_name(policy, optimizer, saved)
    set_optimizer_state_dict(policy, optimizer, saved, options=StateDictOptions(full_state_dict=True))


def _keyed_by_name(policy: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> dict:
    """An index-keyed optimizer state keyed by parameter name instead: index i is the i-th parameter
    of ``optimizer``'s groups, as :meth:`torch.optim.Optimizer.state_dict` numbers them."""
    name_of = {id(parameter): name for name, parameter in policy.named_parameters()}
    names = [name_of[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]
    return {"state": {names[index]: value for index, value in saved["state"].items()},
            "param_groups": [{**group, "params": [names[index] for index in group["params"]]}
                             for group in saved["param_groups"]]}

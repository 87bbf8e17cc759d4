"""Multi-process training under `torchrun`: process group, model wrapping, full state dicts.

    torchrun --nproc_per_node 8 -m mini_t2i.cli train transformer --config ... parallel=ddp
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m mini_t2i.cli train transformer ...

Without torchrun's environment (WORLD_SIZE unset) everything here is a no-op and
training runs in one process. DDP keeps a full copy of the model on every rank and
averages gradients; FSDP (`parallel=fsdp`, torch's `fully_shard`) shards parameters,
gradients and optimizer state over the ranks, for models that do not fit one device.
Checkpoints always hold full (unsharded) tensors, written by rank 0, so a run can
resume on a different number of processes, or on one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if there is one; returns (info, this rank's device).
    NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def wrap_model(model: torch.nn.Module, info: DistInfo, parallel: str, device: torch.device) -> torch.nn.Module:
    """DDP or FSDP-wrap model for training (returns it unchanged in one process)."""
    if not info.enabled:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:  # one shard group per decoder layer, then the rest
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"unknown parallel mode {parallel!r}; use ddp or fsdp")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, parallel: str, info: DistInfo):
    """(model state dict, optimizer state dict) as full CPU tensors, for checkpoints.
    Under FSDP every rank must call this (it gathers); the result matters on rank 0."""
    if info.enabled and parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict,
                    parallel: str, info: DistInfo) -> None:
    """Inverse of full_state: every rank loads the full tensors (FSDP shards them)."""
    if info.enabled and parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                       options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(model_state, strict=True)
    optimizer.load_state_dict(optim_state)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a float over ranks (for logging losses)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / info.world_size


def shutdown(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

"""Where the arrays live: one `Mesh` over all devices of all hosts, axis "data".

    parallel: ddp   data-parallel: every device holds all parameters and optimizer state,
                    the batch is split over devices, XLA all-reduces the gradients.
    parallel: fsdp  fully sharded (ZeRO-3 style): additionally every parameter and its
                    AdamW moments are split over devices along their largest dimension
                    that divides evenly; XLA gathers a layer's weights where it is used and
                    reduce-scatters its gradients. For models larger than one device.

The names are the PyTorch trainer's (`parallel=ddp|fsdp`), so one YAML config serves both.
Multi-host (TPU pod slices, multi-node GPUs): every host runs the same command with
multihost=true; `jax.distributed.initialize()` finds the others, the mesh spans all
devices, and each host feeds the rows of the global batch its devices hold.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def init_multihost(enabled: bool) -> None:
    """Join the other hosts (coordinator, process ids: auto-detected on TPU pods, SLURM and
    from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)."""
    if enabled and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-d mesh over `devices` (default: every device of every host)."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (AXIS,))


def _spec(shape: tuple[int, ...], parallel: str, n: int) -> P:
    """fsdp: shard the largest dimension that n divides; scalars, small or indivisible
    arrays (norm weights of odd sizes) stay replicated."""
    if parallel == "ddp" or n == 1 or not shape:
        return P()
    if parallel != "fsdp":
        raise ValueError(f"unknown parallel mode {parallel!r}; use ddp or fsdp")
    for dim in sorted(range(len(shape)), key=lambda i: -shape[i]):
        if shape[dim] % n == 0:
            return P(*[AXIS if i == dim else None for i in range(len(shape))])
    return P()


def state_shardings(abstract_state, mesh: Mesh, parallel: str):
    """The NamedSharding of every leaf of a (possibly abstract) train state. The rule looks
    at shapes only, so AdamW's moments land where their parameters do."""
    n = mesh.devices.size
    return jax.tree.map(lambda leaf: NamedSharding(mesh, _spec(tuple(leaf.shape), parallel, n)), abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """(micro-batches, rows, tokens) arrays: rows split over the devices."""
    return NamedSharding(mesh, P(None, AXIS))


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """This host's rows (A, b_local, T) -> the global (A, b_local x hosts, T) array on the mesh."""
    sharding = batch_sharding(mesh)
    global_shape = (local.shape[0], local.shape[1] * jax.process_count(), *local.shape[2:])
    return jax.make_array_from_process_local_data(sharding, local, global_shape)


def fetch(tree):
    """A (sharded) tree as full numpy arrays on this host; gathers over hosts when needed."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))

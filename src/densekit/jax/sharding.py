"""Where arrays live: a data-parallel ``jax.sharding.Mesh`` over the devices, multi-host start.

Batches are split along their first axis over the ``data`` axis of the mesh and parameters are
replicated. A step is one ``jit`` over *global* arrays, so the loss sees every device's vectors
(in-batch negatives across devices) and XLA inserts the gathers and gradient reductions.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

AXIS = "data"
COORDINATOR = "JAX_COORDINATOR_ADDRESS"


def initialize_distributed() -> bool:
    """``jax.distributed.initialize()`` when the environment names a coordinator (multi-host).

    ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) is read by JAX itself;
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` are passed on when set (clusters JAX detects,
    e.g. Cloud TPU pods or SLURM, need only the address). Returns whether it initialized.
    """
    if not os.environ.get(COORDINATOR) or jax.distributed.is_initialized():
        return False
    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    jax.distributed.initialize(
        num_processes=int(count) if count else None,
        process_id=int(index) if index else None,
    )
    logger.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


class DataParallel:
    """A 1-D mesh over ``devices`` (default: all, every host) and the two placements used."""

    def __init__(self, devices: list[Any] | None = None) -> None:
        devices = list(jax.devices() if devices is None else devices)
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.batch = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.size = len(devices)
        self.local = sum(1 for d in devices if d.process_index == jax.process_index())

    def chunked(self) -> NamedSharding:
        """``[chunks, rows, ...]`` arrays whose rows are split over the devices (GradCache)."""
        return NamedSharding(self.mesh, PartitionSpec(None, AXIS))

    def replicate(self, tree: Any) -> Any:
        """Copies of ``tree`` (parameters, optimizer state) on every device."""
        return jax.device_put(tree, self.replicated)

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows as its part of the global batch (rows split over devices)."""
        return {
            key: jax.make_array_from_process_local_data(self.batch, value)
            for key, value in local.items()
        }

    def host(self, tree: Any) -> Any:
        """A replicated tree as numpy, read from this host's own copy (no cross-host fetch)."""
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

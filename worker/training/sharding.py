"""Data parallelism over all local devices: a 1-D mesh, batches split along it, parameters replicated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


@dataclass(frozen=True, slots=True)
class DataParallel:
    """The mesh and the two shardings the training loop uses."""

    mesh: Mesh

    @property
    def devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def batch(self) -> NamedSharding:
        """Leading (batch) axis split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def put_batch(self, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
        """Host arrays -> device arrays split over the mesh (the batch size must divide evenly)."""
        return tuple(jax.device_put(a, self.batch) for a in arrays)

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)


def data_parallel(devices: list[Any] | None = None) -> DataParallel:
    """A 1-D mesh over ``devices`` (default: every local device of the default backend)."""
    devs = devices if devices is not None else jax.local_devices()
    return DataParallel(Mesh(np.asarray(devs), (AXIS,)))


def round_to_devices(batch_size: int, devices: int) -> int:
    """The largest multiple of ``devices`` not above ``batch_size`` (at least ``devices``)."""
    return max(devices, batch_size - batch_size % devices)

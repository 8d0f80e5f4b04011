"""The one mesh of the project and how data is placed on it.

Every program (inference, both trainers, benchmarks) runs data-parallel over a 1-D mesh whose axis
``data`` spans all devices of all processes. Parameters are replicated (``P()``); batches are split on
their leading axis (``P("data")``) and put on the devices with ``jax.make_array_from_process_local_data``,
so each process only hands over its own share of a global batch.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (or the given) devices with the axis ``data``."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices, (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def place_batch(mesh: Mesh, local_batch: Any) -> Any:
  """This process's share of the global batch → global arrays sharded on the ``data`` axis."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def place_replicated(mesh: Mesh, tree: Any) -> Any:
  """The same host data on every process → arrays replicated over the mesh (frozen params, datasets)."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def shard_batch(x: jax.Array) -> jax.Array:
  """Inside jit: constrains ``x`` to be split on the batch axis when a mesh is set (``jax.set_mesh``)."""
  if jax.sharding.get_abstract_mesh().empty:
    return x
  return jax.lax.with_sharding_constraint(x, P(AXIS))


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
  """Images per step this process feeds: the global batch must split evenly over the devices."""
  if global_batch % mesh.size:
    raise ValueError(f"batch size {global_batch} is not a multiple of the {mesh.size} devices")
  return global_batch // jax.process_count()

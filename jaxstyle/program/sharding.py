"""The one mesh of the project, how data is placed on it, and the processes that share the devices.

Every program (inference, both trainers, benchmarks) runs data-parallel over a 1-D mesh whose axis
``data`` spans the devices. Parameters are replicated (``P()``); batches are split on their leading axis
(``P("data")``) and put on the devices with ``jax.make_array_from_process_local_data``, so each process
only hands over its own share of a global batch. Several processes (hosts) join one ``jax.distributed``
job through ``initialize_distributed``: the trainers' mesh spans all devices of all processes, while the
CLI gives each process a mesh of its own devices and its own share of the pairs.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` from flags, else the ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` environment variables; a no-op for a single process.

  Must run before the first JAX computation.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address or (num_processes or 1) == 1:
    return
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


@contextlib.contextmanager
def _stdout_to_stderr():
  """File descriptor 1 sent to 2 for a while: Gloo, XLA's CPU collectives, announces its connections
  on stdout, where a command's results go (the CLI prints the files it wrote there, for scripts)."""
  sys.stdout.flush()
  saved = os.dup(1)
  os.dup2(2, 1)
  try:
    yield
  finally:
    os.dup2(saved, 1)
    os.close(saved)


def sum_over_processes(x: np.ndarray) -> np.ndarray:
  """``x`` summed over every process of the job (``x`` itself in a single process).

  A collective: every process must call it, so it is also a barrier (the CLI's start and finish lines).
  Gloo, XLA's CPU collectives, connects the processes at their first collective and gives up there when
  one is 30 s late; once connected, a collective waits for the last process however long it takes. So
  make a first call where the processes are together (right after start-up), before one where they
  may arrive minutes apart.
  """
  with _stdout_to_stderr():
    return np.asarray(multihost_utils.process_allgather(np.asarray(x))).sum(axis=0)


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

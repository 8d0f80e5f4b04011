"""The mesh and batch placement: axis, shardings, values, and the split over several devices."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxstyle.program import sharding


def test_data_mesh_spans_all_or_the_given_devices():
  mesh = sharding.data_mesh()
  assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
  assert list(sharding.data_mesh(jax.devices()[:1]).devices) == jax.devices()[:1]


def test_placement_keeps_values_and_sets_the_sharding():
  mesh = sharding.data_mesh()
  x = np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
  batch = sharding.place_batch(mesh, {"x": x})["x"]
  assert batch.sharding.spec == P("data")
  np.testing.assert_array_equal(np.asarray(batch), x)
  rep = sharding.place_replicated(mesh, {"w": x, "step": np.int32(3)})
  assert rep["w"].sharding.is_fully_replicated and int(rep["step"]) == 3
  np.testing.assert_array_equal(np.asarray(rep["w"]), x)


def test_shard_batch_is_the_identity_without_a_mesh():
  x = jnp.ones((2, 4))
  assert jax.jit(sharding.shard_batch)(x).shape == (2, 4)


FOUR_DEVICES = textwrap.dedent("""
    import jax, numpy as np
    from jaxstyle.program import sharding
    assert jax.device_count() == 4
    mesh = sharding.data_mesh()
    assert sharding.local_batch_size(8, mesh) == 8       # one process feeds the whole global batch
    try:
      sharding.local_batch_size(6, mesh)
      raise SystemExit("6 images on 4 devices accepted")
    except ValueError as e:
      assert "not a multiple of the 4 devices" in str(e), e
    x = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    placed = sharding.place_batch(mesh, x)
    shards = sorted(placed.addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape for s in shards] == [(2, 2)] * 4
    np.testing.assert_array_equal(np.concatenate([np.asarray(s.data) for s in shards]), x)
    rep = sharding.place_replicated(mesh, x)
    assert all(np.array_equal(np.asarray(s.data), x) for s in rep.addressable_shards)
    f = jax.jit(lambda a: sharding.shard_batch(a * 2))
    with jax.set_mesh(mesh):
      assert f(rep).sharding.spec == jax.sharding.PartitionSpec("data")
    print("OK")
""")


def test_four_devices_split_the_batch_and_replicate_params():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", FOUR_DEVICES], env=env, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]

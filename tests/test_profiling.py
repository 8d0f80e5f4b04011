"""jaxstyle.program.profiling: FLOPs counted the same on every backend, peak memory, device names."""
import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding


class _NoBackendCostAnalysis:
  """A lowering whose backend has no cost analysis of its own, as the CUDA plugin (PJRT C API)."""

  def __init__(self, lowered):
    self._lowered = lowered

  def compiler_ir(self, dialect=None):
    return self._lowered.compiler_ir(dialect)

  def cost_analysis(self):
    raise NotImplementedError("Lowered.cost_analysis not implemented on platform 'cuda'")


class _NothingCounts:
  def compiler_ir(self, dialect=None):
    raise RuntimeError("no HLO")

  def cost_analysis(self):
    raise NotImplementedError("no cost analysis")


def _conv_then_dot(x, k, w):
  y = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(y.shape[0], -1) @ w


ARGS = (jax.ShapeDtypeStruct((2, 10, 10, 3), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32),
        jax.ShapeDtypeStruct((8 * 8 * 4, 5), jnp.float32))


def test_flops_are_counted_without_the_backend_cost_analysis():
  """FLOPs come from XLA:CPU's count of the lowered HLO on every backend: the same number when the
  program's own backend cannot count, and when the program was lowered for CUDA."""
  want = 2 * 2 * 8 * 8 * 4 * 3 * 3 * 3 + 2 * 2 * 256 * 5          # conv + matmul multiply-adds × 2
  lowered = jax.jit(_conv_then_dot).lower(*ARGS)
  assert profiling.flops(lowered) == pytest.approx(want, rel=0.01)
  assert profiling.flops(_NoBackendCostAnalysis(lowered)) == profiling.flops(lowered)
  for_cuda = jax.jit(_conv_then_dot).trace(*ARGS).lower(lowering_platforms=("cuda",))
  assert profiling.flops(for_cuda) == profiling.flops(lowered)
  assert profiling.flops(_NothingCounts()) is None and profiling.cost_analysis(_NothingCounts()) is None


def test_bytes_accessed_of_a_matmul():
  """x @ x of a 4×4 float32: two operand reads and one result write of 64 bytes, unfused."""
  lowered = jax.jit(lambda x: x @ x).lower(jax.ShapeDtypeStruct((4, 4), jnp.float32))
  assert profiling.bytes_accessed(lowered) == 3 * 64
  assert profiling.flops(lowered) == 2 * 4 * 4 * 4


def test_counted_flops_of_the_program_lowered_for_cuda_match_the_cpu_lowering():
  cfg = model.TINY
  params = model.param_shapes(cfg)
  image = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  controls = jax.ShapeDtypeStruct((2, 3), jnp.float32)
  mesh = sharding.data_mesh(jax.devices()[:1])
  call = (params, portrait.Batch(image, image), controls)
  on_cpu = profiling.counted_flops(cfg, lambda c: portrait.make_program(c, mesh).lower(*call))
  on_cuda = profiling.counted_flops(
      cfg, lambda c: portrait.make_program(c, mesh).trace(*call).lower(lowering_platforms=("cuda",)))
  assert on_cpu and on_cuda == pytest.approx(on_cpu, rel=1e-6)


def test_chunked_attention_is_counted_unchunked():
  """XLA counts a loop body once; ``counted_flops`` lowers ``model.unchunked`` so every chunk counts."""
  cfg = dataclasses.replace(model.TINY, attention_chunk=8)      # relu4_1 at 64²: 64 queries, 8 chunks
  params = model.param_shapes(cfg)
  image = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  call = (params, portrait.Batch(image, image), jax.ShapeDtypeStruct((2, 3), jnp.float32))
  mesh = sharding.data_mesh(jax.devices()[:1])
  lower = lambda c: portrait.make_program(c, mesh, mode="plain").lower(*call)
  assert profiling.counted_flops(cfg, lower) > profiling.flops(lower(cfg))
  assert profiling.counted_flops(cfg, lower) == pytest.approx(profiling.counted_flops(model.TINY, lower))


def test_compiled_memory_analysis():
  compiled = jax.jit(lambda x: x @ x + 1).lower(jax.ShapeDtypeStruct((256, 256), jnp.float32)).compile()
  temp_mib, args_mib = profiling.compiled_memory_mib(compiled)
  assert args_mib == pytest.approx(256 * 256 * 4 / 2**20)
  assert temp_mib >= 256 * 256 * 4 / 2**20          # at least the output
  assert profiling.compiled_memory_mib(object()) == (None, None)


class _Device:
  def __init__(self, stats, process_index=0, platform="gpu", device_kind="NVIDIA H200"):
    self._stats, self.process_index = stats, process_index
    self.platform, self.device_kind = platform, device_kind

  def memory_stats(self):
    return self._stats


def test_device_peak_is_the_largest_of_this_process_devices():
  devices = [_Device({"peak_bytes_in_use": 5}), _Device({"peak_bytes_in_use": 7}),
             _Device({"peak_bytes_in_use": 99}, process_index=1), _Device(None)]
  assert profiling.device_peak_bytes(devices) == 7
  assert profiling.peak_memory(devices) == (7, "device peak_bytes_in_use")
  assert profiling.device_peak_bytes([_Device(None), _Device({"bytes_in_use": 3})]) is None


PEAK_PROBE = """
import gc, json, mmap
from jaxstyle.program import profiling

class NoStats:
  process_index, platform = 0, "cpu"
  def memory_stats(self):
    return None

gc.disable()
assert profiling.reset_peak_rss()
before = profiling.process_memory_bytes("VmHWM")
size = 64 * 2**20
block = mmap.mmap(-1, size)
for offset in range(0, size, mmap.PAGESIZE):
  block[offset] = 1
peak, what = profiling.peak_memory([NoStats()])
block.close()
print(json.dumps({"added": peak - before, "what": what, "drop": peak - profiling.process_memory_bytes("VmRSS")}))
"""


def test_without_device_stats_the_peak_is_the_process_high_water_mark():
  """CPU: no device counter, so the process's VmHWM, which touching 64 MiB of fresh pages (an anonymous
  mapping: malloc could hand out memory that is already resident) raises by as much. In a fresh
  process, so that no other test's garbage is freed meanwhile."""
  proc = subprocess.run([sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["what"] == "process peak RSS (VmHWM)"
  assert out["added"] >= 64 * 2**20
  assert out["drop"] >= 32 * 2**20                  # unmapped again: the peak is a high-water mark


def test_device_names():
  assert profiling.device_name(_Device(None)) == "NVIDIA H200"
  cpu = jax.devices("cpu")[0]
  assert re.fullmatch(r"CPU, \d+ cores, .+", profiling.device_name(cpu))
  if jax.default_backend() == "cpu":
    assert re.fullmatch(rf"{jax.device_count()}× CPU, \d+ cores, .+ \(cpu\)", profiling.device_description())

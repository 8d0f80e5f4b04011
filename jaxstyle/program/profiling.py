"""Measuring programs: the FLOPs XLA counts, peak memory, and the device they ran on.

FLOPs (``flops``, ``counted_flops``) are XLA:CPU's cost analysis of the *lowered* program on every
backend. ``Lowered.cost_analysis()`` asks the program's own backend, and the CUDA plugin (a PJRT C API
client) has none; a compiled GPU program hides cuDNN convolutions in custom calls that its analysis
counts as zero. The lowered HLO is the same arithmetic on every backend (convolutions and dots are
still HLO ops), so the CPU client counts it on all of them; the backend's own analysis is the fallback
where no CPU client exists (``JAX_PLATFORMS=cuda``).

Peak memory (``peak_memory``): the devices' ``memory_stats()["peak_bytes_in_use"]`` where the backend
keeps it (GPU, TPU), else the process's peak resident set (``VmHWM`` of ``/proc/self/status``; the CPU
backend's buffers are process memory). Both are high-water marks over the whole process: measure
configurations in order of increasing memory, or reset the process's mark (``reset_peak_rss``) first.

``device_name`` / ``device_description`` name the hardware in benchmark tables and weights manifests.
"""
from __future__ import annotations

import os
import platform
from typing import Any, Callable, Sequence

import jax
from jax.extend import backend as jax_backend

from jaxstyle.nets import model as model_lib

MIB = 2**20


# --- FLOPs ----------------------------------------------------------------------------------------


def cost_analysis(lowered: Any) -> dict[str, float] | None:
  """XLA's cost analysis of a ``jax.stages.Lowered`` (``flops``, ``bytes accessed``, ...), counted by
  XLA:CPU whichever backend it was lowered for; the backend's own where there is no CPU client; None
  when neither can count."""
  try:
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top  (no public API for this yet)
    cost = _jax.hlo_module_cost_analysis(jax_backend.get_backend("cpu"),
                                         lowered.compiler_ir("hlo").as_hlo_module())
  except Exception:  # pylint: disable=broad-except  (no CPU client, or the private API moved)
    try:
      cost = lowered.cost_analysis()
    except Exception:  # pylint: disable=broad-except
      return None
  if isinstance(cost, (list, tuple)):   # older jax: one dict per partition
    cost = cost[0] if cost else None
  return dict(cost) if cost else None


def flops(lowered: Any) -> float | None:
  """FLOPs of the lowered (global, not yet partitioned) program; None where nothing can count them."""
  return _cost(lowered, "flops")


def bytes_accessed(lowered: Any) -> float | None:
  """Bytes the lowered program's HLO ops read and write, unfused (an upper bound on memory traffic)."""
  return _cost(lowered, "bytes accessed")


def _cost(lowered: Any, key: str) -> float | None:
  cost = cost_analysis(lowered)
  return float(cost[key]) if cost and cost.get(key) else None


def counted_flops(cfg: model_lib.ModelConfig,
                  lower: Callable[[model_lib.ModelConfig], Any]) -> float | None:
  """FLOPs of the program that ``lower(cfg)`` lowers, counted on ``model.unchunked(cfg)``.

  XLA's cost analysis counts a loop body once: with the attention in query chunks (relu4_1 from 1024²
  on) the program itself would be counted 20% (1024²) to 60% (2048²) short.
  """
  return flops(lower(model_lib.unchunked(cfg)))


def compiled_memory_mib(compiled: Any) -> tuple[float | None, float | None]:
  """(temp + output, argument) MiB per device of a compiled program, from XLA's memory analysis."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    return None, None
  if m is None:
    return None, None
  return (m.temp_size_in_bytes + m.output_size_in_bytes) / MIB, m.argument_size_in_bytes / MIB


# --- peak memory ----------------------------------------------------------------------------------


def device_peak_bytes(devices: Sequence[jax.Device] | None = None) -> int | None:
  """Max over ``devices`` (default: this process's) of ``memory_stats()["peak_bytes_in_use"]``; None
  where the backend keeps no such counter (CPU)."""
  devices = jax.local_devices() if devices is None else devices
  peaks = []
  for d in devices:
    if d.process_index != jax.process_index():   # only a process's own devices report stats
      continue
    stats = d.memory_stats() if hasattr(d, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def process_memory_bytes(field: str = "VmHWM") -> int | None:
  """A memory field of ``/proc/self/status`` in bytes (``VmHWM``: peak resident set; ``VmRSS``: now);
  None where there is no procfs."""
  try:
    with open("/proc/self/status") as f:
      return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
  except (OSError, StopIteration, ValueError, IndexError):
    return None


def reset_peak_rss() -> bool:
  """Resets the process's ``VmHWM`` to its current resident set (Linux ``clear_refs``); False where
  it cannot."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_memory(devices: Sequence[jax.Device] | None = None) -> tuple[int | None, str]:
  """(peak bytes, what they are): the devices' ``peak_bytes_in_use`` where supported, else the
  process's peak resident set."""
  peak = device_peak_bytes(devices)
  if peak is not None:
    return peak, "device peak_bytes_in_use"
  return process_memory_bytes("VmHWM"), "process peak RSS (VmHWM)"


# --- the device -----------------------------------------------------------------------------------


def device_name(device: jax.Device | None = None) -> str:
  """``"NVIDIA H100 80GB HBM3"``, ``"TPU v5 lite"`` or, on CPU, ``"CPU, 16 cores, <model name>"``."""
  device = jax.devices()[0] if device is None else device
  if device.platform != "cpu":
    return device.device_kind
  model = platform.processor() or platform.machine() or "CPU"
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"CPU, {os.cpu_count()} cores, {model}"


def device_description() -> str:
  """All devices in one line, e.g. ``"8× NVIDIA H100 80GB HBM3 (gpu)"``."""
  d = jax.devices()[0]
  return f"{jax.device_count()}× {device_name(d)} ({d.platform})"

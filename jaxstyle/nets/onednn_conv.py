"""oneDNN convolutions inside the XLA program, through ``jax.ffi`` (``csrc/onednn_conv.cc``).

XLA:CPU (jaxlib 0.10) computes bf16 convolutions in float32; oneDNN, the CPU library under PyTorch,
runs them on the CPU's bf16 matrix units (AMX tiles, AVX512-BF16 dot products) with float32
accumulation. ``conv2d`` is a zero-padded stride-1 convolution of NHWC bf16 (or float32) activations
with an HWIO kernel as one custom call of the jitted program (still one XLA program; no Python runs
per call), with a custom VJP: the input's gradient is the same forward kernel applied to the output
gradient with the flipped kernel, the kernel's gradient oneDNN's backward-weights kernel.

The extension is built by ``pip install`` (scikit-build-core, ``CMakeLists.txt``) and loaded on first
use. ``unavailable()`` says in one line why it cannot be used (not built, oneDNN missing); ``cpu_isa()``
is the instruction set oneDNN dispatches to at run time, and ``has_bf16_units()`` whether it has bf16
dot products, the condition for ``conv.py``'s ``"auto"`` to pick this path for bf16 programs.

Threads: oneDNN's OpenMP team is as wide as the machine and every call holds one lock, so XLA's pool
(which calls in from one of its threads while the others wait) and oneDNN never run more busy threads
than cores; ``OMP_WAIT_POLICY`` is left to the user (docs/scaling.md has the measurements).
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np

ONEDNN_DIST = "onednn-cpu-gomp"
# ISAs (oneDNN's names) with bf16 dot-product instructions: AVX512-BF16, AVX512-FP16 parts, AMX.
BF16_ISAS = ("avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16")


@functools.cache
def _extension():
  """(the extension module, None), or (None, one line saying why it cannot be loaded)."""
  if jax.default_backend() != "cpu":
    return None, f"the default JAX backend is {jax.default_backend()}, not the CPU"
  try:
    dist = importlib.metadata.distribution(ONEDNN_DIST)
  except importlib.metadata.PackageNotFoundError:
    return None, f"oneDNN's CPU library ({ONEDNN_DIST}) is not installed"
  library = next((dist.locate_file(f) for f in dist.files or () if f.name == "libdnnl.so.3"), None)
  if library is None:
    return None, f"{ONEDNN_DIST} holds no libdnnl.so.3"
  try:
    # Loaded by path first: the extension finds libdnnl.so.3 by name, and pip puts it under the
    # environment's lib/, which is on no loader path.
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    module = importlib.import_module("jaxstyle.nets._onednn_conv")
  except (OSError, ImportError) as e:
    return None, f"the oneDNN extension did not load ({' '.join(str(e).split())[:160]})"
  for name, capsule in module.handlers().items():
    jax.ffi.register_ffi_target(name, capsule, platform="cpu")
  return module, None


def unavailable() -> str | None:
  """None when the oneDNN convolution can run here, else one line saying why not."""
  return _extension()[1]


def cpu_isa() -> str | None:
  """oneDNN's instruction set on this CPU (``"avx512_core_amx"``, ``"avx2"``, …), None without oneDNN."""
  module, _ = _extension()
  return None if module is None else module.cpu_isa()


def has_bf16_units() -> bool:
  return cpu_isa() in BF16_ISAS


def implementation(dtype, h: int, w: int, c: int, d: int, k: int = 3) -> str | None:
  """oneDNN's kernel for a zero-padded ``k×k`` convolution of a ``[1, h, w, c]`` input to ``d``
  channels (``"brgconv:avx512_core_amx"``, …): what benchmarks print; None where there is none."""
  module, _ = _extension()
  return None if module is None else module.implementation(jnp.dtype(dtype).name, 1, h, w, c, d, k)


def _pads(attrs: tuple[int, int, int, int]) -> dict[str, np.int64]:
  return {name: np.int64(p) for name, p in zip(("pad_top", "pad_bottom", "pad_left", "pad_right"), attrs)}


def _forward(x: jax.Array, kernel: jax.Array, pads: tuple[int, int, int, int]) -> jax.Array:
  module, why = _extension()
  if module is None:
    raise RuntimeError(f"the oneDNN convolution cannot run: {why}")
  kh, kw, _, d = kernel.shape
  b, h, w, _ = x.shape
  out = jax.ShapeDtypeStruct((b, h + pads[0] + pads[1] - kh + 1, w + pads[2] + pads[3] - kw + 1, d), x.dtype)
  bias = jnp.zeros((d,), jnp.float32)
  return jax.ffi.ffi_call("jaxstyle_onednn_conv", out)(x, kernel.astype(x.dtype), bias, relu=False,
                                                       **_pads(pads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, pads: tuple[int, int, int, int]) -> jax.Array:
  """Stride-1 convolution of NHWC ``x`` with an HWIO ``kernel``, zero ``pads`` (top, bottom, left,
  right), accumulated in float32; the result in ``x``'s dtype (bfloat16 or float32)."""
  return _forward(x, kernel, pads)


def _conv2d_fwd(x, kernel, pads):
  return _forward(x, kernel, pads), (x, kernel)


def _conv2d_bwd(pads, residuals, dy):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  top, bottom, left, right = pads
  # dx[i] = Σ_r dy[i + top − r] · k[r]: a correlation of dy with the flipped, transposed kernel.
  flipped = kernel[::-1, ::-1].swapaxes(2, 3)
  dx = conv2d(dy, flipped, (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right))
  dk = jax.ffi.ffi_call("jaxstyle_onednn_conv_bwd_weights",
                        jax.ShapeDtypeStruct(kernel.shape, jnp.float32))(x, dy.astype(x.dtype), **_pads(pads))
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)

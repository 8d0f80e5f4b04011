"""oneDNN kernels inside the XLA program, through ``jax.ffi`` (``csrc/``): convolutions and matmuls.

XLA:CPU (jaxlib 0.10) computes bf16 convolutions and dots in float32; oneDNN, the CPU library under
PyTorch, runs them on the CPU's bf16 matrix units (AMX tiles, AVX512-BF16 dot products) with float32
accumulation. Each kernel is one custom call of the jitted program (still one XLA program; no Python
runs per call), with a custom VJP, so training uses them too:

- ``conv2d``: a zero-padded stride-1 convolution of NHWC activations with an HWIO kernel, bias and
  ReLU fused (``csrc/onednn_conv.cc``). The input's gradient is the same kernel run on the output
  gradient with the flipped kernel; the kernel's gradient is oneDNN's backward-weights kernel.
- ``matmul``: batched ``op(a) · op(b)`` with operands read transposed through their strides
  (``csrc/onednn_matmul.cc``): the two products of SANet's attention.

The extension is built by ``pip install`` (scikit-build-core, ``CMakeLists.txt``) and loaded on first
use. ``unavailable()`` says in one line why it cannot be used (not built, oneDNN missing, another
backend); ``cpu_isa()`` is the instruction set oneDNN dispatches to at run time and
``has_bf16_units()`` whether it has bf16 dot products, the condition for ``conv.py``'s ``"auto"``.

Weights: each kernel reads its weights in a blocked layout of its own. The packed forms are kept between
calls (``csrc/onednn_conv.cc``: ``WeightCache``), each beside a copy of the bytes it was packed from, and
used only for weights equal to those bytes, so a call with other weights in the same buffer packs anew;
at most ``JAXSTYLE_ONEDNN_WEIGHT_CACHE_MB`` MiB (default 512; 0 packs on every call, as PyTorch's eager
mode does), least recently used evicted first. ``weight_cache_stats()`` counts hits, misses and the
time spent comparing, copying and packing.

Threads: every call holds one process-wide lock and runs on oneDNN's OpenMP team (one thread per core),
whose master is the XLA pool thread that made the call: two calls XLA could run at once (the content and
style VGG passes) never put two teams on the cores (docs/scaling.md §9 measures the thread settings).
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

ONEDNN_DIST = "onednn-cpu-gomp"
WEIGHT_CACHE_ENV = "JAXSTYLE_ONEDNN_WEIGHT_CACHE_MB"
# The default plain and portrait programs keep ~0.1–0.2 GB at bf16 (every weight raw and packed).
DEFAULT_WEIGHT_CACHE_MB = 512
# ISAs (oneDNN's names) with bf16 dot-product instructions: AVX512-BF16, AVX512-FP16 parts, AMX.
BF16_ISAS = ("avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16")


@functools.cache
def _extension():
  """(the extension module, None), or (None, one line saying why it cannot be used)."""
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
    module = importlib.import_module("jaxstyle.nets._onednn")
  except (OSError, ImportError) as e:
    return None, f"the oneDNN extension did not load ({' '.join(str(e).split())[:160]})"
  for name, capsule in module.handlers().items():
    jax.ffi.register_ffi_target(name, capsule, platform="cpu")
  if hasattr(module, "set_weight_cache_budget"):   # a build older than this file has no cache
    module.set_weight_cache_budget(_weight_cache_mb() << 20)
  return module, None


def _weight_cache_mb() -> int:
  text = os.environ.get(WEIGHT_CACHE_ENV, "")
  try:
    mb = int(text) if text else DEFAULT_WEIGHT_CACHE_MB
    if mb < 0:
      raise ValueError
  except ValueError:
    logging.getLogger(__name__).warning("jaxstyle: %s=%r is not a number of MiB; using %d", WEIGHT_CACHE_ENV,
                                        text, DEFAULT_WEIGHT_CACHE_MB)
    mb = DEFAULT_WEIGHT_CACHE_MB
  return mb


def unavailable() -> str | None:
  """None when the oneDNN kernels can run here, else one line saying why not."""
  return _extension()[1]


def _module():
  module, why = _extension()
  if module is None:
    raise RuntimeError(f"the oneDNN kernels cannot run: {why}")
  return module


def cpu_isa() -> str | None:
  """oneDNN's instruction set on this CPU (``"avx512_core_amx"``, ``"avx2"``, …), None without oneDNN."""
  module, _ = _extension()
  return None if module is None else module.cpu_isa()


def has_bf16_units() -> bool:
  return cpu_isa() in BF16_ISAS


def conv_implementation(dtype, h: int, w: int, c: int, d: int, k: int = 3) -> str | None:
  """oneDNN's kernel for a zero-padded ``k×k`` convolution of a ``[1, h, w, c]`` input to ``d``
  channels (``"brgconv:avx512_core_amx"``, …): what benchmarks print; None where there is none."""
  module, _ = _extension()
  return None if module is None else module.conv_implementation(jnp.dtype(dtype).name, h, w, c, d, k)


def weight_cache_stats() -> dict[str, float] | None:
  """The packed-weights cache since the process started: ``hits``, ``misses`` (packed and kept),
  ``uncached`` (packed, not kept: over the budget), ``evictions``, ``reused_addresses`` (calls whose
  weights came in a buffer other weights of the same layouts were packed from: what a cache keyed by
  address would have got wrong); ``entries``, ``bytes`` and ``budget`` now; seconds spent comparing
  weights with kept copies (``verify_s``), copying them (``copy_s``) and packing (``pack_s``). None
  without the extension."""
  module, _ = _extension()
  return None if module is None or not hasattr(module, "weight_cache_stats") else module.weight_cache_stats()


def set_weight_cache_budget(nbytes: int) -> None:
  """Keeps at most ``nbytes`` of weights (raw and packed) from now on, evicting down to it; 0 empties the
  cache and packs on every call."""
  _module().set_weight_cache_budget(int(nbytes))


def conv2d(x: jax.Array, kernel: jax.Array, pads: tuple[int, int, int, int], bias: jax.Array | None = None,
           relu: bool = False) -> jax.Array:
  """``relu?(conv(x, kernel) + bias)``: stride 1, NHWC ``x``, HWIO ``kernel`` of ``x``'s dtype (bfloat16
  or float32), zero ``pads`` (top, bottom, left, right), accumulated in float32; ``bias`` (float32 or
  ``x``'s dtype) is added before the result is rounded to ``x``'s dtype."""
  if bias is None:
    bias = jnp.zeros(kernel.shape[-1], jnp.float32)
  return _conv2d(x, kernel, bias, tuple(pads), relu)


def _conv_forward(x, kernel, bias, pads, relu):
  kh, kw, _, d = kernel.shape
  b, h, w, _ = x.shape
  out = jax.ShapeDtypeStruct((b, h + pads[0] + pads[1] - kh + 1, w + pads[2] + pads[3] - kw + 1, d), x.dtype)
  _module()
  return jax.ffi.ffi_call("jaxstyle_onednn_conv", out)(x, kernel, bias, pads=np.asarray(pads, np.int64), relu=relu)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv2d(x, kernel, bias, pads, relu):
  return _conv_forward(x, kernel, bias, pads, relu)


def _conv2d_fwd(x, kernel, bias, pads, relu):
  y = _conv_forward(x, kernel, bias, pads, relu)
  return y, (x, kernel, bias, y if relu else None)


def _conv2d_bwd(pads, relu, residuals, dy):
  x, kernel, bias, y = residuals
  if relu:
    dy = jnp.where(y > 0, dy, jnp.zeros((), dy.dtype))
  kh, kw = kernel.shape[:2]
  top, bottom, left, right = pads
  # dx[i] = Σ_r dy[i + top − r] · k[r]: a correlation of dy with the flipped, transposed kernel.
  flipped = kernel[::-1, ::-1].swapaxes(2, 3)
  dx = conv2d(dy.astype(x.dtype), flipped, (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right))
  dk = jax.ffi.ffi_call("jaxstyle_onednn_conv_bwd_weights", jax.ShapeDtypeStruct(kernel.shape, jnp.float32))(
      x, dy.astype(x.dtype), pads=np.asarray(pads, np.int64))
  db = dy.astype(jnp.float32).sum(axis=(0, 1, 2))
  return dx, dk.astype(kernel.dtype), db.astype(bias.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def matmul(a: jax.Array, b: jax.Array, transpose_a: bool = False, transpose_b: bool = False,
           out_dtype=None) -> jax.Array:
  """``op(a) · op(b)`` per batch item of ``[B, ·, ·]`` arrays of one dtype (bfloat16 or float32),
  ``op`` a transpose of the last two axes where asked, accumulated in float32; the result in
  ``out_dtype`` (default: the operands')."""
  return _matmul(a, b, transpose_a, transpose_b, jnp.dtype(out_dtype or a.dtype))


def _matmul_forward(a, b, transpose_a, transpose_b, out_dtype):
  rows = a.shape[2] if transpose_a else a.shape[1]
  cols = b.shape[1] if transpose_b else b.shape[2]
  _module()
  return jax.ffi.ffi_call("jaxstyle_onednn_matmul", jax.ShapeDtypeStruct((a.shape[0], rows, cols), out_dtype))(
      a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul(a, b, transpose_a, transpose_b, out_dtype):
  return _matmul_forward(a, b, transpose_a, transpose_b, out_dtype)


def _matmul_fwd(a, b, transpose_a, transpose_b, out_dtype):
  return _matmul_forward(a, b, transpose_a, transpose_b, out_dtype), (a, b)


def _matmul_bwd(transpose_a, transpose_b, out_dtype, residuals, dc):
  a, b = residuals
  dc = dc.astype(a.dtype)
  # c = A·B with A = op(a), B = op(b): dA = dc·Bᵀ, dB = Aᵀ·dc, each read back into a's and b's layout.
  da = (_matmul(b, dc, transpose_b, True, a.dtype) if transpose_a else
        _matmul(dc, b, False, not transpose_b, a.dtype))
  db = (_matmul(dc, a, True, transpose_a, b.dtype) if transpose_b else
        _matmul(a, dc, not transpose_a, False, b.dtype))
  return da, db


_matmul.defvjp(_matmul_fwd, _matmul_bwd)

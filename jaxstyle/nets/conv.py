"""Convolution used by every model in jaxstyle, with a per-backend formulation.

All convolutions in SANet, its decoder, VGG and SegNet are stride-1 ``k×k`` convolutions with "same"
padding (reflection or zeros). Three formulations, tested equal (``tests/test_conv.py``):

- ``"xla"``: ``lax.conv_general_dilated`` (VALID) on the explicitly padded input: the textbook form,
  what cuDNN (GPU) and the MXU (TPU) want.
- ``"same"``: ``lax.conv_general_dilated`` with the padding inside the convolution. Zero padding is the
  conv's own; reflection padding is zero padding plus an exact correction of the border pixels
  (``reflect_border_correction``). XLA:CPU (jaxlib ≥ 0.10) hands convolutions to YNNPACK, whose padded
  convolution runs 2–3× faster than its VALID one on a padded copy (measured on a 2-core x86 CPU,
  2026-11, ``docs/scaling.md``).
- ``"onednn"``: oneDNN's convolution called from the program through ``jax.ffi`` (``onednn``):
  bf16 on the CPU's AMX / AVX512-BF16 units with float32 accumulation, which XLA:CPU does not use
  (it computes bf16 convolutions in float32). Zero padding is oneDNN's own; reflection is padded first.

``formulation="auto"`` is ``"xla"`` off the CPU; on the CPU it is ``"onednn"`` for bfloat16 where oneDNN
finds bf16 dot-product instructions at run time (``onednn.has_bf16_units``), else ``"same"``
(float32 keeps its XLA path). With ``"same"`` and ``"onednn"``, a 3×3 conv of a nearest ×2 upsample (the
decoder) never forms the upsampled image (``upsample_conv``).
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.nets import onednn
from jaxstyle.nets.ops import upsample2x

FORMULATIONS = ("auto", "xla", "same", "onednn")
PADDINGS = ("reflect", "zero")


def resolve_formulation(formulation: str, dtype=None) -> str:
  """The formulation ``formulation`` names for convolutions computed in ``dtype`` (module docstring)."""
  if formulation not in FORMULATIONS:
    raise ValueError(f"unknown conv formulation {formulation!r}; expected one of {FORMULATIONS}")
  if formulation != "auto":
    return formulation
  if jax.default_backend() != "cpu":
    return "xla"
  if dtype is not None and jnp.dtype(dtype) == jnp.bfloat16 and _onednn_bf16():
    return "onednn"
  return "same"


@functools.cache
def _onednn_bf16() -> bool:
  """Whether bf16 convolutions go to oneDNN here; says once, in one line, why not when they don't."""
  why = onednn.unavailable()
  if why is None and not onednn.has_bf16_units():
    why = f"this CPU has no bf16 dot-product instructions (oneDNN ISA {onednn.cpu_isa()})"
  if why is not None:
    logging.getLogger(__name__).warning("jaxstyle: bf16 convolutions run on XLA, not oneDNN: %s", why)
  return why is None


def pad(x: jax.Array, p: int, mode: str, axes: tuple[int, ...] = (1, 2)) -> jax.Array:
  """Pads ``axes`` (default: the two spatial axes of NHWC) by ``p`` with ``mode`` ('reflect'/'zero')."""
  if mode not in PADDINGS:
    raise ValueError(f"unknown padding {mode!r}; expected one of {PADDINGS}")
  if p == 0:
    return x
  widths = [(p, p) if a in axes else (0, 0) for a in range(x.ndim)]
  return jnp.pad(x, widths, mode="reflect" if mode == "reflect" else "constant")


def reflect_border_correction(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``conv(reflect_pad(x)) − conv(zero_pad(x))`` for a 3×3 kernel: it is zero but on the border.

  The reflected ring differs from the zero ring by its top row (input row 1, width-reflected), bottom
  row (row H−2), left column (input column 1) and right column (column W−2); corners belong to the
  rows. Returns the corrections of output rows (0, H−1) as ``[B, 2, W, D]`` and of output columns
  (0, W−1) as ``[B, H, 2, D]``.
  """
  h, w = x.shape[1:3]
  rows = pad(jnp.stack([x[:, 1], x[:, h - 2]], axis=1), 1, "reflect", axes=(2,))     # B 2 W+2 C
  cols = pad(jnp.stack([x[:, :, 1], x[:, :, w - 2]], axis=2), 1, "zero", axes=(1,))  # B H+2 2 C
  row_fix = sum(jnp.einsum("bswc,scd->bswd", rows[:, :, j:j + w], kernel[::2, j]) for j in range(3))
  col_fix = sum(jnp.einsum("bhsc,scd->bhsd", cols[:, i:i + h], kernel[i, ::2]) for i in range(3))
  return row_fix, col_fix


def conv_same(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
  """The convolution with its padding inside ``lax.conv_general_dilated`` (see the module docstring)."""
  p = kernel.shape[0] // 2
  dn = ("NHWC", "HWIO", "NHWC")
  if padding == "reflect" and p > 1:   # only 3×3 kernels have a border correction
    return jax.lax.conv_general_dilated(pad(x, p, padding), kernel, (1, 1), ((p, p), (p, p)),
                                        dimension_numbers=dn)[:, p:-p, p:-p]
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((p, p), (p, p)), dimension_numbers=dn)
  if padding == "zero" or p == 0:
    return y
  pad(x, p, padding)   # validates the mode
  h, w = x.shape[1:3]
  row_fix, col_fix = reflect_border_correction(x, kernel)
  y = y.at[:, 0].add(row_fix[:, 0]).at[:, h - 1].add(row_fix[:, 1])
  return y.at[:, :, 0].add(col_fix[:, :, 0]).at[:, :, w - 1].add(col_fix[:, :, 1])


def conv_onednn(x: jax.Array, kernel: jax.Array, padding: str, bias: jax.Array | None = None,
                relu: bool = False) -> jax.Array:
  """The convolution on oneDNN (``onednn.conv2d``), bias and ReLU fused; reflection is padded first."""
  p = kernel.shape[0] // 2
  if padding == "reflect" and p:
    return onednn.conv2d(pad(x, p, padding), kernel, (0, 0, 0, 0), bias, relu)
  pad(x, p, padding)   # validates the mode
  return onednn.conv2d(x, kernel, (p, p, p, p), bias, relu)


def epilogue(y: jax.Array, bias: jax.Array | None, relu: bool) -> jax.Array:
  """``relu?(y + bias)``: what ``"onednn"`` fuses into its kernel, for the other formulations."""
  y = y if bias is None else y + bias.astype(y.dtype)
  return jax.nn.relu(y) if relu else y


def conv(x: jax.Array, kernel: jax.Array, padding: str, formulation: str, bias: jax.Array | None = None,
         relu: bool = False) -> jax.Array:
  """"Same"-padded stride-1 convolution of NHWC ``x`` with an HWIO ``kernel``, then ``+ bias`` and a
  ReLU where given."""
  formulation = resolve_formulation(formulation, x.dtype)
  if formulation == "onednn":
    return conv_onednn(x, kernel, padding, bias, relu)
  if kernel.shape[:2] == (1, 1):
    y = jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
  elif formulation == "same":
    y = conv_same(x, kernel, padding)
  else:
    p = kernel.shape[0] // 2
    y = jax.lax.conv_general_dilated(pad(x, p, padding), kernel, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return epilogue(y, bias, relu)


def upsampled_phase_kernels(kernel: jax.Array) -> dict[tuple[int, int], jax.Array]:
  """The 2×2 kernels that a 3×3 ``kernel`` applies to the low-resolution image, per output phase.

  Output pixel ``(2i + a, 2j + b)`` of a 3×3 conv over a nearest ×2 upsample sees low-resolution rows
  ``(i − 1, i, i)`` for ``a = 0`` and ``(i, i, i + 1)`` for ``a = 1`` (likewise columns), so the taps that
  land on the same low-resolution pixel add up: ``(K0, K1 + K2)`` at rows ``(i − 1, i)`` and
  ``(K0 + K1, K2)`` at rows ``(i, i + 1)``.
  """
  rows = (jnp.stack([kernel[0], kernel[1] + kernel[2]]), jnp.stack([kernel[0] + kernel[1], kernel[2]]))
  cols = lambda k, b: (jnp.stack([k[:, 0], k[:, 1] + k[:, 2]], axis=1) if b == 0 else
                       jnp.stack([k[:, 0] + k[:, 1], k[:, 2]], axis=1))
  return {(a, b): cols(rows[a], b) for a in (0, 1) for b in (0, 1)}


def upsample_conv(x: jax.Array, kernel: jax.Array, padding: str, formulation: str,
                  bias: jax.Array | None = None, relu: bool = False) -> jax.Array:
  """``conv(upsample2x(x), kernel, padding, formulation, bias, relu)``.

  With the ``"same"`` and ``"onednn"`` formulations and a 3×3 kernel, the upsampled image is never
  formed: each of the four output phases is a 2×2 convolution of the low-resolution image
  (``upsampled_phase_kernels``), 4·(2×2) instead of 4·(3×3) taps per low-resolution pixel, 2.25× fewer
  FLOPs, and the phases are interleaved once. Reflecting the upsampled image repeats its edge pixels,
  which are the low-resolution image's edge pixels; zero padding stays zero padding. oneDNN computes
  the four phases as one 2×2 convolution with four times the output channels (one large call runs
  closer to the matrix units' peak than four small ones).
  """
  formulation = resolve_formulation(formulation, x.dtype)
  if formulation not in ("same", "onednn") or kernel.shape[:2] != (3, 3):
    return conv(upsample2x(x), kernel, padding, formulation, bias, relu)
  pad(x, 1, padding)   # validates the mode
  b, h, w, _ = x.shape
  d = kernel.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if padding == "reflect" else "constant")
  phase_kernels = upsampled_phase_kernels(kernel)
  # Window rows (i − 1 + a, i + a) of x are rows (i + a, i + a + 1) of xp.
  if formulation == "onednn":
    y = onednn.conv2d(xp, jnp.concatenate(list(phase_kernels.values()), axis=-1), (0, 0, 0, 0),
                      None if bias is None else jnp.tile(bias, len(phase_kernels)), relu)
    phases = {ab: y[:, ab[0]:ab[0] + h, ab[1]:ab[1] + w, i * d:(i + 1) * d]
              for i, ab in enumerate(phase_kernels)}
  else:
    dn = ("NHWC", "HWIO", "NHWC")
    phases = {}
    for (pa, pb), k2 in phase_kernels.items():
      # The conv's own (0, 1) padding keeps it on YNNPACK's padded path (see the module docstring);
      # the extra rows are cropped.
      y = jax.lax.conv_general_dilated(xp, k2, (1, 1), ((0, 1), (0, 1)), dimension_numbers=dn)
      phases[pa, pb] = epilogue(y[:, pa:pa + h, pb:pb + w], bias, relu)
  rows = [jnp.stack([phases[a, 0], phases[a, 1]], axis=3) for a in (0, 1)]   # B h w 2 D
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, d)


class Conv(nn.Module):
  """Stride-1 convolution with explicit padding; params ``kernel`` (HWIO) and ``bias``, float32.

  ``upsample=True`` convolves the nearest ×2 upsample of the input (``upsample_conv``); ``relu`` applies
  a ReLU after the bias (in the convolution's own kernel with ``"onednn"``).
  """
  features: int
  kernel_size: int = 3
  padding: str = "reflect"
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  relu: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, upsample: bool = False) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if resolve_formulation(self.formulation, self.dtype) != "onednn":
      bias = bias.astype(self.dtype)   # oneDNN adds the float32 bias before rounding
    return (upsample_conv if upsample else conv)(x, kernel, self.padding, self.formulation, bias, self.relu)

"""Convolution used by every model in jaxstyle, with a per-backend formulation.

All convolutions in SANet, its decoder, VGG and SegNet are stride-1 ``k×k`` convolutions with "same"
padding (reflection or zeros). Three formulations, tested equal (``tests/test_conv.py``):

- ``"xla"``: ``lax.conv_general_dilated`` (VALID) on the explicitly padded input: the textbook form,
  what cuDNN (GPU) and the MXU (TPU) want.
- ``"same"``: ``lax.conv_general_dilated`` with the padding inside the convolution. Zero padding is the
  conv's own; reflection padding is zero padding plus an exact correction of the border pixels
  (``reflect_border_correction``). XLA:CPU (jaxlib ≥ 0.10) hands convolutions to YNNPACK, whose padded
  convolution runs 2–3× faster than its VALID one on a padded copy (the 2.3× gap to PyTorch in
  ``shared/PERF_NOTES.md`` was this VALID form); measured in ``docs/scaling.md``.
- ``"matmul"``: the convolution as one matrix product (``conv_matmul``): the form that beat XLA:CPU's
  VALID convolution before the padded path was found; kept as an independent formulation.

``formulation="auto"`` is ``"same"`` on CPU and ``"xla"`` elsewhere. With ``"same"``, a 3×3 conv of a
nearest ×2 upsample (the decoder) runs as four 2×2 convs of the low-resolution input (``upsample_conv``).

``conv_matmul`` picks one of three layouts per layer shape, each a single matrix product whose operand
is built by one fused copy and whose result is summed by one fused loop:

- ``"rows"`` (most layers): the ``k`` horizontal shifts of the width-padded input, stacked on the
  channel axis, times the kernel as a ``[k·C, k·D]`` matrix (one column block per kernel row); the
  ``k`` row blocks of the result are summed with vertical shifts. One dot with ``k``× larger
  contraction and output than a per-tap product, and no padded input copy: the height padding is
  applied to the product (a per-pixel linear map commutes with reflecting or zero-padding rows).
- ``"taps"`` (few outputs, e.g. the decoder's last RGB conv): the unpadded input times all ``k²`` taps
  as a ``[C, k²·D]`` matrix; the result is padded and its ``k²`` tap blocks summed with shifts.
- ``"patches"`` (few inputs, e.g. VGG's RGB conv1_1): the classic im2col, one ``[k²·C, D]`` product.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

FORMULATIONS = ("auto", "xla", "same", "matmul")
PADDINGS = ("reflect", "zero")


def resolve_formulation(formulation: str) -> str:
  if formulation not in FORMULATIONS:
    raise ValueError(f"unknown conv formulation {formulation!r}; expected one of {FORMULATIONS}")
  if formulation == "auto":
    return "same" if jax.default_backend() == "cpu" else "xla"
  return formulation


def pad(x: jax.Array, p: int, mode: str, axes: tuple[int, ...] = (1, 2)) -> jax.Array:
  """Pads ``axes`` (default: the two spatial axes of NHWC) by ``p`` with ``mode`` ('reflect'/'zero')."""
  if mode not in PADDINGS:
    raise ValueError(f"unknown padding {mode!r}; expected one of {PADDINGS}")
  if p == 0:
    return x
  widths = [(p, p) if a in axes else (0, 0) for a in range(x.ndim)]
  return jnp.pad(x, widths, mode="reflect" if mode == "reflect" else "constant")


def matmul_layout(kernel_shape: tuple[int, ...]) -> str:
  """Which matmul layout ``conv_matmul`` uses for an HWIO kernel shape (see the module docstring).

  ``taps`` writes a ``k²·D``-wide product and reads the input once; ``rows`` writes a ``k·C``-wide
  operand and a ``k·D``-wide product. Per output pixel that is ``C + (2k² + 1)·D`` against
  ``2k·C + (2k + 1)·D`` floats moved, so ``taps`` wins for few output channels.
  """
  k, _, c, d = kernel_shape
  if k == 1:
    return "dot"
  if c * k * k <= 64:
    return "patches"
  if c + (2 * k * k + 1) * d <= 2 * k * c + (2 * k + 1) * d:
    return "taps"
  return "rows"


def _shifted_sum(y: jax.Array, offsets, size: tuple[int, int]) -> jax.Array:
  """``Σ_t y[:, di:di+H, dj:dj+W, t]`` over ``offsets[t] = (di, dj)``; fuses into one loop."""
  h, w = size
  out = None
  for t, (di, dj) in enumerate(offsets):
    term = y[:, di:di + h, dj:dj + w, t]
    out = term if out is None else out + term
  return out


def conv_matmul(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
  """"Same"-padded stride-1 conv of NHWC ``x`` with an HWIO ``kernel`` as one matrix product."""
  k, kw, c, d = kernel.shape
  if k != kw or k % 2 == 0:
    raise ValueError(f"square odd kernels only, got {kernel.shape[:2]}")
  b, h, w, _ = x.shape
  p = k // 2
  layout = matmul_layout(kernel.shape)
  if layout == "dot":
    return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
  if layout == "patches":
    xp = pad(x, p, padding)
    patches = jnp.concatenate([xp[:, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=-1)
    return jnp.einsum("bhwc,cd->bhwd", patches, kernel.reshape(k * k * c, d))
  if layout == "taps":
    y = jnp.einsum("bhwc,cd->bhwd", x, kernel.transpose(2, 0, 1, 3).reshape(c, k * k * d))
    y = pad(y.reshape(b, h, w, k * k, d), p, padding)
    return _shifted_sum(y, [(i, j) for i in range(k) for j in range(k)], (h, w))
  # rows: the k horizontal shifts side by side on the channel axis, one column block per kernel row.
  xw = pad(x, p, padding, axes=(2,))
  shifts = jnp.stack([xw[:, :, j:j + w] for j in range(k)], axis=3).reshape(b, h, w, k * c)
  y = jnp.einsum("bhwc,cd->bhwd", shifts, kernel.transpose(1, 2, 0, 3).reshape(k * c, k * d))
  y = pad(y.reshape(b, h, w, k, d), p, padding, axes=(1,))
  return _shifted_sum(y, [(i, 0) for i in range(k)], (h, w))


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


def conv(x: jax.Array, kernel: jax.Array, padding: str, formulation: str) -> jax.Array:
  """"Same"-padded stride-1 convolution of NHWC ``x`` with an HWIO ``kernel`` (no bias)."""
  formulation = resolve_formulation(formulation)
  if kernel.shape[:2] == (1, 1):
    return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
  if formulation == "same":
    return conv_same(x, kernel, padding)
  if formulation == "matmul":
    return conv_matmul(x, kernel, padding)
  p = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(pad(x, p, padding), kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def upsample2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour ×2 upsampling of NHWC ``x`` (PyTorch's ``Upsample(scale_factor=2)``)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


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


def upsample_conv(x: jax.Array, kernel: jax.Array, padding: str, formulation: str) -> jax.Array:
  """``conv(upsample2x(x), kernel, padding, formulation)``.

  With the ``"same"`` formulation and a 3×3 kernel, the upsampled image is never formed: each of the
  four output phases is a 2×2 convolution of the low-resolution image (``upsampled_phase_kernels``),
  4·(2×2) instead of 4·(3×3) taps per low-resolution pixel, 2.25× fewer FLOPs, and the phases are
  interleaved once. Reflecting the upsampled image repeats its edge pixels, which are the low-resolution
  image's edge pixels; zero padding stays zero padding.
  """
  if resolve_formulation(formulation) != "same" or kernel.shape[:2] != (3, 3):
    return conv(upsample2x(x), kernel, padding, formulation)
  pad(x, 1, padding)   # validates the mode
  b, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if padding == "reflect" else "constant")
  dn = ("NHWC", "HWIO", "NHWC")
  phases = {}
  for (pa, pb), k2 in upsampled_phase_kernels(kernel).items():
    # Window rows (i − 1 + a, i + a) of x are rows (i + a, i + a + 1) of xp. The conv's own (0, 1)
    # padding keeps it on YNNPACK's padded path (see the module docstring); the extra rows are cropped.
    y = jax.lax.conv_general_dilated(xp, k2, (1, 1), ((0, 1), (0, 1)), dimension_numbers=dn)
    phases[pa, pb] = y[:, pa:pa + h, pb:pb + w]
  rows = [jnp.stack([phases[a, 0], phases[a, 1]], axis=3) for a in (0, 1)]   # B h w 2 D
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class Conv(nn.Module):
  """Stride-1 convolution with explicit padding; params ``kernel`` (HWIO) and ``bias``, float32.

  ``upsample=True`` convolves the nearest ×2 upsample of the input (``upsample_conv``).
  """
  features: int
  kernel_size: int = 3
  padding: str = "reflect"
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, upsample: bool = False) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if upsample:
      y = upsample_conv(x, kernel, self.padding, self.formulation)
    else:
      y = conv(x, kernel, self.padding, self.formulation)
    return y + bias.astype(self.dtype)

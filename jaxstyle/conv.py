"""Convolution used by every model in jaxstyle, with a per-backend formulation.

All convolutions in SANet, its decoder, VGG and SegNet are stride-1 ``k×k`` convolutions with explicit
padding (reflection or zeros). XLA lowers ``lax.conv_general_dilated`` to cuDNN on GPU and to the MXU on
TPU, which is what those backends want. On CPU, XLA's own convolution is 2.3× slower than oneDNN
(``shared/PERF_NOTES.md``) while the same convolution written as ``k*k`` shifted matrix products runs
close to PyTorch. ``formulation="auto"`` picks between the two per backend; both are tested equal.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

FORMULATIONS = ("auto", "xla", "matmul")


def resolve_formulation(formulation: str) -> str:
  if formulation not in FORMULATIONS:
    raise ValueError(f"unknown conv formulation {formulation!r}; expected one of {FORMULATIONS}")
  if formulation == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  return formulation


def pad(x: jax.Array, p: int, mode: str) -> jax.Array:
  """Pads the two spatial axes of an NHWC array by ``p`` with ``mode`` ('reflect' or 'zero')."""
  if p == 0:
    return x
  widths = ((0, 0), (p, p), (p, p), (0, 0))
  if mode == "reflect":
    return jnp.pad(x, widths, mode="reflect")
  if mode == "zero":
    return jnp.pad(x, widths)
  raise ValueError(f"unknown padding {mode!r}; expected 'reflect' or 'zero'")


def conv_valid(x: jax.Array, kernel: jax.Array, formulation: str) -> jax.Array:
  """'VALID' stride-1 convolution of NHWC ``x`` with an HWIO ``kernel``."""
  kh, kw = kernel.shape[:2]
  if resolve_formulation(formulation) == "xla" or (kh, kw) == (1, 1):
    if (kh, kw) == (1, 1):
      return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      term = jnp.einsum("bhwc,cd->bhwd", x[:, i:i + h, j:j + w], kernel[i, j])
      out = term if out is None else out + term
  return out


class Conv(nn.Module):
  """Stride-1 convolution with explicit padding; params ``kernel`` (HWIO) and ``bias``, float32."""
  features: int
  kernel_size: int = 3
  padding: str = "reflect"
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x = pad(x.astype(self.dtype), k // 2, self.padding)
    y = conv_valid(x, kernel.astype(self.dtype), self.formulation)
    return y + bias.astype(self.dtype)

"""The compute dtype of a run: ``"auto"`` is bf16 where it is fast and as good as float32, else float32.

    dtype = precision.choose("auto", log)      # "bfloat16" or "float32", and one line saying why (once)

bf16 pays where matrix units compute it: GPUs and TPUs, and CPUs whose bf16 dot-product instructions
(AMX tiles, AVX512-BF16) the oneDNN kernels find at run time (``nets.onednn``: ``unavailable()``,
``has_bf16_units()``). Elsewhere XLA:CPU computes a bf16 program's convolutions in float32 and only
rounds between them: no faster, and less exact, so float32. ``resolve_dtype`` is the choice itself, a
pure function of what the machine offers (tested on fake descriptions); ``choose`` asks this process.
``JAXSTYLE_AUTO_DTYPE=float32`` (or ``bfloat16``) fixes what ``auto`` means without asking: the tests
set it, so that their references do not depend on the machine they run on.
The quality harness's paired runs (docs/quality.md, on XLA and on the oneDNN kernels) find bf16 keeps
every face, the face NME, the masks and the background within their standard errors, but takes 0.004 of
the person's style gain (about 3 standard errors). Which part costs it is not isolated yet, so ``auto``
computes the whole program in one dtype and ``--dtype float32`` keeps the float32 pictures.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Callable

AUTO = "auto"
DTYPES = (AUTO, "float32", "bfloat16")
AUTO_VARIABLE = "JAXSTYLE_AUTO_DTYPE"
# Backends whose matrix units compute bf16 (jax.default_backend() names; "gpu" on older JAX).
BF16_BACKENDS = ("gpu", "cuda", "rocm", "tpu")

_said: set[str] = set()   # the lines ``choose`` printed already in this process


@dataclasses.dataclass(frozen=True)
class Choice:
  dtype: str       # "float32" or "bfloat16"
  reason: str      # why, for the one line users see


def resolve_dtype(requested: str, backend: str, *, onednn_problem: str | None = None,
                  isa: str | None = None, bf16_units: bool = False) -> Choice:
  """The dtype ``requested`` names on a ``backend`` (``jax.default_backend()``); on the CPU,
  ``onednn_problem`` is ``onednn.unavailable()`` (None: the kernels load), ``isa`` oneDNN's instruction
  set and ``bf16_units`` ``onednn.has_bf16_units()``. Raises ``ValueError`` for an unknown name."""
  if requested not in DTYPES:
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {requested!r}")
  if requested != AUTO:
    return Choice(requested, "asked for with --dtype")
  if backend in BF16_BACKENDS:
    return Choice("bfloat16", f"the {backend} backend computes bf16 on its matrix units")
  if backend != "cpu":
    return Choice("float32", f"bf16 is not known to be fast on the {backend} backend")
  if onednn_problem is not None:
    return Choice("float32", f"the oneDNN kernels cannot run ({onednn_problem}), and XLA:CPU computes bf16 "
                             "convolutions in float32")
  if not bf16_units:
    return Choice("float32", f"this CPU has no bf16 dot-product instructions (oneDNN ISA {isa})")
  return Choice("bfloat16", f"oneDNN runs bf16 on this CPU's matrix units (ISA {isa})")


def machine_choice(requested: str) -> Choice:
  """``resolve_dtype`` for this process's default backend (loads the oneDNN extension on the CPU), or
  what ``JAXSTYLE_AUTO_DTYPE`` says ``auto`` is."""
  fixed = os.environ.get(AUTO_VARIABLE, "").strip()
  if requested == AUTO and fixed:
    if fixed not in DTYPES[1:]:
      raise ValueError(f"{AUTO_VARIABLE} must be float32 or bfloat16, not {fixed!r}")
    return Choice(fixed, f"{AUTO_VARIABLE}={fixed}")
  import jax  # pylint: disable=g-import-not-at-top  (the pure part above needs no JAX)
  backend = jax.default_backend()
  if requested != AUTO or backend != "cpu":
    return resolve_dtype(requested, backend)
  from jaxstyle.nets import onednn  # pylint: disable=g-import-not-at-top
  problem = onednn.unavailable()
  return resolve_dtype(requested, backend, onednn_problem=problem, isa=onednn.cpu_isa(),
                       bf16_units=problem is None and onednn.has_bf16_units())


def say_once(line: str, log: Callable[[str], None] | None = None) -> None:
  """``line`` through ``log`` (default: stderr), the first time this process says it."""
  if line in _said:
    return
  _said.add(line)
  if log is None:
    print(line, file=sys.stderr, flush=True)
  else:
    log(line)


def decide(requested: str) -> tuple[str, str | None]:
  """The dtype to compute in for ``requested`` (one of ``DTYPES``), and for ``"auto"`` the one line that
  says what it chose and why (None for a dtype forced by the flag or by ``JAXSTYLE_AUTO_DTYPE``)."""
  choice = machine_choice(requested)
  if requested == AUTO and not os.environ.get(AUTO_VARIABLE, "").strip():
    return choice.dtype, f"--dtype auto: computing in {choice.dtype}: {choice.reason}"
  return choice.dtype, None


def choose(requested: str, log: Callable[[str], None] | None = None) -> str:
  """``decide``'s dtype, its line said once (``say_once``)."""
  dtype, line = decide(requested)
  if line:
    say_once(line, log)
  return dtype

"""What a stylising run is asked for, the checks made before computing, and the program call it makes.

Shared by the image runner (``stylize_files``) and the video runner (``stylize_video``): the ``Request``
(the CLI's flags, field for field), its ranges, the refusals found before any computing (options,
writable folders, the weights a mode needs) and after it (a non-finite result), and one call of the
portrait program with the batch placed on the mesh. Every refusal is one line: ``UsageError`` for
options, ``WeightsError`` for weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import jax
import numpy as np

import jaxstyle
from jaxstyle.checkpoints import loading
from jaxstyle.io import image_io
from jaxstyle.io.cli import UsageError
from jaxstyle.io.weights import WeightsError
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import sharding

DEFAULT_WEIGHTS = Path(jaxstyle.__file__).resolve().parent.parent / "weights"
DTYPES = ("float32", "bfloat16")
MODES = ("portrait", "plain")
MAX_SIZE = math.isqrt(image_io.MAX_PIXELS)   # --size: a square picture of this side hits the pixel cap
# --feather: the blur's filter grows with σ (1e6 asked for gigabytes); the program's bound.
MAX_FEATHER = portrait.MAX_FEATHER
ALPHA_RANGE = (0.0, 1.0)   # 0 = SANet's identity transfer T(c, c), 1 = full transfer
W_RANGE = (0.0, 4.0)       # attention weights: 0 drops a scale; beyond a few the features saturate
MAX_IO_THREADS = 64        # each holds a decoded content; more only fills memory


@dataclasses.dataclass(frozen=True)
class Request:
  """Everything one run needs; the CLI flags map 1:1 onto these fields."""
  content: Sequence[str]
  style: Sequence[str]
  output: str = "stylized"
  weights: str = str(DEFAULT_WEIGHTS)
  size: int = 512                        # longest side of content and style; 0 keeps the file's size
  mode: str = "portrait"
  controls: portrait.Controls = portrait.Controls()
  feather: float = portrait.FEATHER
  preserve_color: bool = False
  mask: str | None = None                # a person mask file instead of SegNet
  dtype: str = "float32"
  save_mask: bool | str = False          # True: next to each output; a str: into that folder
  sheet: bool | str = False
  batch_size: int = 0                    # pairs per program call; 0: one per device
  overwrite: bool = False                # redo pairs whose outputs exist (else they are skipped)
  summary: str | None = None             # JSON lines of every pair; "auto": OUTPUT/run_summary.jsonl
  io_threads: int = 4                    # decode and write beside the program; 0: all in turn
  tfds_data_dir: str | None = None       # where tfds:NAME inputs are prepared (None: tfds' default)


def check_request(req: Request) -> None:
  if req.mode not in MODES:
    raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {req.mode!r}")
  if req.dtype not in DTYPES:
    raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {req.dtype!r}")
  if req.size and not image_io.MIN_SIDE <= req.size <= MAX_SIZE:
    raise UsageError(f"--size must be 0 (keep) or {image_io.MIN_SIDE}..{MAX_SIZE} (a square picture of "
                     f"that side reaches the {image_io.MAX_PIXELS / 1e6:g} MP limit), not {req.size}")
  if not 0 <= req.feather <= MAX_FEATHER:
    raise UsageError(f"--feather must be 0..{MAX_FEATHER:g} (a fraction of the longer side), "
                     f"not {req.feather}")
  if req.batch_size < 0:
    raise UsageError(f"--batch-size must be >= 0, not {req.batch_size}")
  if not 0 <= req.io_threads <= MAX_IO_THREADS:
    raise UsageError(f"--io-threads must be 0..{MAX_IO_THREADS}, not {req.io_threads}")
  check_controls(req.controls)
  if req.mode == "plain" and (req.mask or req.save_mask):
    raise UsageError("--mask and --save-mask apply to --mode portrait only")


def check_controls(controls: portrait.Controls) -> None:
  """α in ``ALPHA_RANGE`` and W in ``W_RANGE`` (NaN fails both), else ``UsageError`` naming the flag."""
  for field in dataclasses.fields(controls):
    value = getattr(controls, field.name)
    lo, hi = ALPHA_RANGE if field.name.startswith("alpha") else W_RANGE
    if not lo <= value <= hi:
      raise UsageError(f"--{field.name.replace('_', '-')} must be {lo:g}..{hi:g}, not {value}")


def check_finite(out: dict[str, np.ndarray], name: Path) -> None:
  """Refuses (``WeightsError``) an output that is not finite: inputs are checked finite, so NaN here
  comes from the weights, and saving it would make a confident black picture."""
  bad = [k for k in ("image", "mask", "person") if k in out and not np.isfinite(out[k]).all()]
  if bad:
    raise WeightsError(f"{name}: the {', '.join(bad)} computed for this pair holds NaN or infinite "
                       "values (broken weights?); not written")


def check_writable_paths(paths: Iterable[Path]) -> None:
  """Every folder of ``paths`` is, or can be made, a writable folder: found before any computing."""
  for folder in sorted({Path(p).parent for p in paths}):
    existing = folder
    while not existing.exists() and existing != existing.parent:
      existing = existing.parent
    if not existing.is_dir():
      raise UsageError(f"cannot write into {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
      raise UsageError(f"cannot write into {folder}: {existing} is not writable")


def needed_networks(mode: str, user_mask: bool) -> list[str]:
  """The trained networks a run reads besides the encoder: SegNet only for portraits without a mask."""
  return ["transform", "decoder"] + ["segnet"] * (mode == "portrait" and not user_mask)


def load_params(req: Request, user_mask: bool
                ) -> tuple[model_lib.Params, model_lib.ModelConfig, jax.sharding.Mesh]:
  """The params a run needs (``needed_networks``), checked and replicated over this process's devices;
  the model config at the request's dtype; the mesh.

  The mesh holds only this process's devices: in a job of several processes each stylises its own
  share, and a program over every process's devices would make each call a collective they all join.
  """
  params, cfg = loading.load(req.weights, needed_networks(req.mode, user_mask), dtype=req.dtype)
  mesh = sharding.data_mesh(jax.local_devices())
  return jax.device_put(params, sharding.replicated(mesh)), cfg, mesh


def per_call(req: Request, mesh: jax.sharding.Mesh) -> int:
  """Pairs (or frames) per program call: ``--batch-size`` rounded up to a multiple of the device count."""
  return -(-(req.batch_size or mesh.size) // mesh.size) * mesh.size


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
  """``x`` with its last item repeated along axis 0 up to ``size`` items."""
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if len(x) < size else x


def stylize_batch(program, mesh: jax.sharding.Mesh, params: model_lib.Params, contents: np.ndarray,
                  styles: np.ndarray, controls: np.ndarray, masks: np.ndarray | None = None,
                  sizes: np.ndarray | None = None) -> dict[str, jax.Array]:
  """One call of a ``make_program`` program, the batch (a multiple of ``mesh.size``) split over ``data``.

  ``sizes``: the valid sizes of bucket-padded inputs (a ``with_sizes`` program). Returns the program's
  outputs as global arrays, still sharded (padding included).
  """
  images, rest = place_inputs(mesh, contents, styles, sizes, masks)
  return program(params, *images, controls, *rest)


def place_inputs(mesh: jax.sharding.Mesh, contents: np.ndarray, styles: np.ndarray,
                 sizes: np.ndarray | None = None, masks: np.ndarray | None = None) -> tuple[list, list]:
  """``([contents, styles], [sizes, masks])`` (those given) as global arrays split over ``data``: the
  order the programs take them in, around the controls of a whole program."""
  f32 = lambda x: np.ascontiguousarray(x, np.float32)
  batch = [f32(contents), f32(styles)]
  batch += [] if sizes is None else [np.ascontiguousarray(sizes, np.int32)]
  batch += [] if masks is None else [f32(masks)]
  return sharding.place_batch(mesh, batch[:2]), sharding.place_batch(mesh, batch[2:])


@contextlib.contextmanager
def out_of_memory_as_usage_error(size: str, batch: int):
  """Turns XLA's RESOURCE_EXHAUSTED into a one-line hint; other runtime errors pass through."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    raise UsageError(f"out of memory stylising {size} images in batches of {batch}: try a smaller "
                     "--size, --batch-size 1 or --dtype bfloat16") from None

"""What a stylising run is asked for and the checks made before computing: the one place of both.

``Settings`` are how to stylise (size, mode, the controls, feather, preserve colour, the style's scale):
the CLI's request holds one and every studio call takes one. ``Request`` is a whole CLI run (the flags, field for field:
inputs, outputs, weights, dtype, batching). The checks refuse what would fail later, before any
computing: options out of range (``check_settings``, ``check_request``), folders that cannot be
written (``check_writable_paths``) and outputs that would overwrite an input (``check_not_inputs``).
Every refusal is one line: ``UsageError`` for options, ``WeightsError`` for weights, ``ImageError`` for
files (``REFUSALS``).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from jaxstyle.io import image_io
from jaxstyle.io.cli import UsageError
from jaxstyle.io.image_io import ImageError
from jaxstyle.io.weights import WeightsError
from jaxstyle.program import portrait
from jaxstyle.program.portrait import Controls

# What a run refuses in one line; MemoryError: a host allocation the checks did not foresee, and the
# runner's out-of-memory refusal (``runner.OutOfMemory``).
REFUSALS = (ImageError, UsageError, WeightsError, MemoryError)
# --dtype: "auto" is bf16 where the machine computes it fast (a GPU, a CPU with bf16 units), else float32
# (``program.precision``, whose DTYPES these are; the runner resolves it).
DTYPES = ("auto", "float32", "bfloat16")
MODES = portrait.MODES     # the program's, named here for the flags and the page
MAX_SIZE = math.isqrt(image_io.MAX_PIXELS)   # --size: a square picture of this side hits the pixel cap
# --feather: the blur's filter grows with σ (1e6 asked for gigabytes); the program's bound.
MAX_FEATHER = portrait.MAX_FEATHER
ALPHA_RANGE = (0.0, 1.0)   # 0 = SANet's identity transfer T(c, c), 1 = full transfer
W_RANGE = (0.0, 4.0)       # attention weights: 0 drops a scale; beyond a few the features saturate
MAX_IO_THREADS = 64        # each holds a decoded content; more only fills memory
STYLE_SCALE_RANGE = (0.1, 2.0)   # the style's longest side ÷ the content's
# A style read smaller than this is read at this side: at 64 px relu5_1 holds 4×4 keys, and below it
# the attention has next to nothing to choose from.
MIN_STYLE_SIDE = 64
# Each mode's default style scales, (background, person); plain SANet has the background's only.
# Chosen by ``benchmarks/controls_search.py`` (steps ``style_scale``, ``plain_style_scale``; the candidates
# in docs/runs/controls_search_round5*.csv, the held-out check in docs/quality.md): at 2/3 of the content's
# side the painting's strokes come out larger and the background takes more of its style, while the
# structure check still holds (at 1/2 it does not).
STYLE_SCALES = {"portrait": (0.67, 0.67), "plain": (0.67, 0.67)}


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to stylise a pair: what the CLI's flags and the studio's controls both set."""
  size: int = 512                        # longest side of content and style; 0 keeps the file's size
  mode: str = "portrait"                 # one of ``portrait.MODES``
  controls: Controls = Controls()
  feather: float = portrait.FEATHER
  preserve_color: bool = False
  # The style's longest side as a fraction of the content's, per region (None: the mode's default,
  # ``STYLE_SCALES``): below 1 the painting's strokes come out larger. With ``size`` 0 the style keeps
  # its file's size.
  style_scale_background: float | None = None
  style_scale_person: float | None = None

  def style_scales(self) -> tuple[float, float]:
    """(background, person) style scales, the mode's defaults filled in."""
    defaults = STYLE_SCALES[self.mode]
    given = self.style_scale_background, self.style_scale_person
    return tuple(d if g is None else g for g, d in zip(given, defaults))


def style_sides(settings: Settings) -> tuple[tuple[int | None, int | None], str | None]:
  """The longest side each region's style is read at, (background, person): None keeps the file's
  size (``size`` 0), and the person's is None when it equals the background's (one style pass serves
  both); with a note when a side was raised to ``MIN_STYLE_SIDE`` (say it once)."""
  if not settings.size:
    return (None, None), None
  floor = min(MIN_STYLE_SIDE, settings.size)   # never above the content itself
  wanted = [round(scale * settings.size) for scale in settings.style_scales()]
  sides = [max(floor, side) for side in wanted]
  raised = [f"{region} {w} px" for region, w, side in zip(("background", "person"), wanted, sides) if side != w]
  note = (f"style scale: the {' and '.join(raised)} style is read at {floor} px, the least the encoder "
          "can use") if raised else None
  background, person = sides
  return (background, None if person == background or settings.mode == "plain" else person), note


@dataclasses.dataclass(frozen=True)
class Request:
  """Everything one CLI run needs; the flags map 1:1 onto these fields and those of ``Settings``."""
  content: Sequence[str]
  style: Sequence[str]
  output: str = "stylized"
  settings: Settings = Settings()
  weights: str | None = None             # a weights folder; None: the weights shipped in the package
  mask: str | None = None                # a person mask file instead of SegNet
  dtype: str = "auto"                    # one of DTYPES
  save_mask: bool | str = False          # True: next to each output; a str: into that folder
  sheet: bool | str = False
  batch_size: int = 0                    # pairs per program call; 0: one per device
  overwrite: bool = False                # redo pairs whose outputs exist (else they are skipped)
  summary: str | None = None             # JSON lines of every pair; "auto": OUTPUT/run_summary.jsonl
  io_threads: int = 4                    # decode and write beside the program; 0: all in turn
  tfds_data_dir: str | None = None       # where tfds:NAME inputs are prepared (None: tfds' default)


def check_settings(settings: Settings) -> None:
  """``UsageError`` naming the flag of the first setting out of range."""
  if settings.mode not in portrait.MODES:
    raise UsageError(f"--mode must be one of {', '.join(portrait.MODES)}, not {settings.mode!r}")
  if settings.size and not image_io.MIN_SIDE <= settings.size <= MAX_SIZE:
    raise UsageError(f"--size must be 0 (keep) or {image_io.MIN_SIDE}..{MAX_SIZE} (a square picture of "
                     f"that side reaches the {image_io.MAX_PIXELS / 1e6:g} MP limit), not {settings.size}")
  if not 0 <= settings.feather <= MAX_FEATHER:
    raise UsageError(f"--feather must be 0..{MAX_FEATHER:g} (a fraction of the longer side), "
                     f"not {settings.feather}")
  check_controls(settings.controls)
  lo, hi = STYLE_SCALE_RANGE
  for region in ("background", "person"):
    scale = getattr(settings, f"style_scale_{region}")
    if scale is not None and not lo <= scale <= hi:
      raise UsageError(f"--style-scale-{region} must be {lo:g}..{hi:g} (the style's longest side ÷ the "
                       f"content's), not {scale}")


def check_request(req: Request) -> None:
  check_settings(req.settings)
  if req.dtype not in DTYPES:
    raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {req.dtype!r}")
  if req.batch_size < 0:
    raise UsageError(f"--batch-size must be >= 0, not {req.batch_size}")
  if not 0 <= req.io_threads <= MAX_IO_THREADS:
    raise UsageError(f"--io-threads must be 0..{MAX_IO_THREADS}, not {req.io_threads}")
  if req.settings.mode == "plain" and (req.mask or req.save_mask):
    raise UsageError("--mask and --save-mask apply to --mode portrait only")


def check_controls(controls: Controls) -> None:
  """α in ``ALPHA_RANGE`` and W in ``W_RANGE`` (NaN fails both), else ``UsageError`` naming the flag."""
  for field in dataclasses.fields(controls):
    value = getattr(controls, field.name)
    lo, hi = ALPHA_RANGE if field.name.startswith("alpha") else W_RANGE
    if not lo <= value <= hi:
      raise UsageError(f"--{field.name.replace('_', '-')} must be {lo:g}..{hi:g}, not {value}")


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


def check_not_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
  """Refuses (``UsageError``) an output that names an input file (the same path, or a hard link)."""
  ids = set().union(*map(image_io.file_ids, inputs))
  for path in outputs:
    if image_io.file_ids(path) & ids:
      raise UsageError(f"{path}: refusing to overwrite an input (choose another --output)")

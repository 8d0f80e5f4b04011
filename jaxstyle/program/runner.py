"""The one way to run the program: weights loaded onto this process's devices, a batch placed, the call.

    runner = Runner.load(None, dtype="bfloat16")                              # the shipped weights
    batch = buckets.bucket_batch(contents, styles, runner.batch_size(), hw)   # a ``portrait.Batch``
    outs = runner.stylize(batch, Controls().as_array(), count=len(contents))  # one dict per picture

The CLI's files, video frames and the studio's pairs all go through a ``Runner``: ``load`` checks and
replicates the weights once and turns the persistent compile cache on; ``stylize`` (the whole program)
and the split program's halves (``prepare``, ``transfer``, ``composite``: the studio's) place a host
``Batch`` on the ``data`` mesh, call a program jitted once per runner and settings, and turn XLA's
out-of-memory error into ``OutOfMemory``, a ``MemoryError`` with one line that says what to change.

The mesh holds only this process's devices: in a job of several processes each stylises its own share,
and a program over every process's devices would make each call a collective they all join.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Iterator, Sequence

import jax
import numpy as np

from jaxstyle.checkpoints import loading
from jaxstyle.nets.model import ModelConfig, Params
from jaxstyle.program import buckets
from jaxstyle.program import compile_cache
from jaxstyle.program import executables
from jaxstyle.program import portrait
from jaxstyle.program import precision
from jaxstyle.program import sharding
from jaxstyle.program.portrait import Batch

NETWORKS = ("transform", "decoder", "segnet")


class OutOfMemory(MemoryError):
  """A batch that does not fit the device's memory; its message says what to change."""


def check_finite(out: dict[str, np.ndarray], name: object) -> None:
  """Refuses (``WeightsError``) an output that is not finite: inputs are checked finite, so NaN here
  comes from the weights, and saving it would make a confident black picture."""
  bad = [k for k in ("image", "mask", "person") if k in out and not np.isfinite(out[k]).all()]
  if bad:
    raise loading.WeightsError(f"{name}: the {', '.join(bad)} computed for this pair holds NaN or "
                               "infinite values (broken weights?); not written")


def networks_for(mode: str, user_mask: bool) -> list[str]:
  """The trained networks a run reads besides the encoder: SegNet only for portraits without a mask."""
  return ["transform", "decoder"] + ["segnet"] * (portrait.region_count(mode) == 2 and not user_mask)


@contextlib.contextmanager
def out_of_memory_refused(batch: Batch) -> Iterator[None]:
  """XLA's RESOURCE_EXHAUSTED as ``OutOfMemory``; other runtime errors pass through."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    b, h, w = batch.content.shape[:3]
    raise OutOfMemory(f"out of memory stylising {w}x{h} images in batches of {b}: try a smaller "
                      "--size, --batch-size 1 or --dtype bfloat16") from None


def crop_items(out: dict[str, np.ndarray], batch: Batch, count: int | None) -> list[dict[str, np.ndarray]]:
  """The program's host outputs as one dict per item of the first ``count`` (all), each cropped to its
  content's valid size when the batch was padded into a bucket."""
  n = len(batch.content) if count is None else count
  if batch.sizes is None:
    return [{k: v[i] for k, v in out.items()} for i in range(n)]
  return [{k: buckets.crop(v[i], tuple(int(x) for x in hw[:2])) for k, v in out.items()}
          for i, hw in enumerate(batch.sizes[:n])]


class Runner:
  """Params, model config and mesh of this process, and the programs jitted for them."""

  def __init__(self, params: Params, cfg: ModelConfig, mesh: jax.sharding.Mesh,
               executables_dir: os.PathLike | None = None, note: str | None = None,
               log: Callable[[str], None] | None = None):
    self.params, self.cfg, self.mesh = params, cfg, mesh
    self.executables_dir = executables_dir   # where ``program`` keeps its executables (None: nowhere)
    # Said with the first program built, not at loading: a run refused before computing ends with its
    # one ``error:`` line alone.
    self._note, self._log = note, log
    self._programs: dict[tuple, Callable] = {}

  def _say_note(self) -> None:
    if self._note:
      precision.say_once(self._note, self._log)

  @classmethod
  def load(cls, weights: str | os.PathLike | None = None, networks: Sequence[str] = NETWORKS, *,
           dtype: str = "auto", log: Callable[[str], None] | None = None) -> Runner:
    """The encoder and ``networks`` of a weights folder (None: the shipped weights), checked
    (``loading.load``) and replicated over this process's devices, the model config at compute
    ``dtype`` (``"auto"``: ``precision.decide``; its line is said with the first program built). Turns
    on the persistent compile cache first (``compile_cache.enable``) and keeps the programs' executables
    beside it (``executables``)."""
    directory = compile_cache.enable(log)
    dtype, note = precision.decide(dtype)
    params, cfg = loading.load(weights, networks, dtype=dtype)
    mesh = sharding.data_mesh(jax.local_devices())
    return cls(jax.device_put(params, sharding.replicated(mesh)), cfg, mesh,
               executables.folder(directory, log), note, log)

  def batch_size(self, requested: int = 0) -> int:
    """Items per program call: ``requested`` (0: one per device) rounded up to a multiple of the devices."""
    return -(-(requested or self.mesh.size) // self.mesh.size) * self.mesh.size

  def place(self, batch: Batch) -> Batch:
    """A host batch (a multiple of the device count) as global arrays split over ``data``."""
    return sharding.place_batch(self.mesh, batch.as_numpy())

  def program(self, mode: str = "portrait", feather: float = portrait.FEATHER, keep_color: bool = False):
    """``portrait.make_program`` for these settings, jitted once per runner; its executables kept in
    ``executables_dir`` (``executables.Cached``: a later process neither traces nor compiles it)."""
    key = mode, float(feather), bool(keep_color)
    self._say_note()
    if key not in self._programs:
      jitted = portrait.make_program(self.cfg, self.mesh, mode=mode, feather=key[1], keep_color=key[2])
      identity = f"program(mode={mode!r}, feather={key[1]!r}, keep_color={key[2]}, cfg={self.cfg!r})"
      self._programs[key] = executables.Cached(jitted, identity, self.mesh, self.executables_dir)
    return self._programs[key]

  @functools.cached_property
  def split(self) -> portrait.SplitProgram:
    """The split program in portrait mode (plain SANet is its background region)."""
    self._say_note()
    return portrait.make_split_programs(self.cfg, self.mesh)

  def stylize(self, batch: Batch, controls: np.ndarray, *, mode: str = "portrait",
              feather: float = portrait.FEATHER, keep_color: bool = False,
              count: int | None = None) -> list[dict[str, np.ndarray]]:
    """The whole program on a host ``batch``: the outputs of its first ``count`` items (all), each
    cropped to its valid size (``crop_items``)."""
    program = self.program(mode, feather, keep_color)
    with out_of_memory_refused(batch):
      out = program(self.params, self.place(batch), np.asarray(controls, np.float32))
      return crop_items({k: np.asarray(v) for k, v in out.items()}, batch, count)

  @functools.cached_property
  def _style_features(self) -> Callable:
    batch, replicated = sharding.batch_sharding(self.mesh), sharding.replicated(self.mesh)
    fn = functools.partial(portrait.style_features, cfg=self.cfg)
    return jax.jit(fn, in_shardings=(replicated, batch), out_shardings=batch)

  def style_features(self, style: np.ndarray) -> dict[str, np.ndarray]:
    """A host style batch ``[B, H, W, 3]``'s ``portrait.style_features``, on the host: as a ``Batch``'s
    ``style`` it lets ``stylize`` run many contents with one style and no style VGG pass."""
    self._say_note()
    placed = sharding.place_batch(self.mesh, np.ascontiguousarray(style, np.float32))
    return {k: np.asarray(v) for k, v in self._style_features(self.params, placed).items()}

  def prepare(self, batch: Batch) -> dict[str, jax.Array]:
    """The split program's ``prepare`` of a host ``batch``, kept on the devices."""
    with out_of_memory_refused(batch):
      return jax.block_until_ready(self.split.prepare(self.params, self.place(batch)))

  def restyle(self, prepared: dict[str, jax.Array], style: np.ndarray | None, style_sizes: np.ndarray | None,
              region: int) -> dict[str, jax.Array]:
    """``prepared`` with region ``region``'s attention redone for a host ``style`` batch (the painting at
    another scale, padded to its bucket with its valid ``style_sizes`` ``[B, 2]``); for the person,
    ``style`` None drops its own attention, so that it mixes the background's again."""
    if style is None:
      return portrait.without_person_style(prepared)
    sizes = None if style_sizes is None else np.ascontiguousarray(style_sizes, np.int32)
    style, sizes = sharding.place_batch(self.mesh, (np.ascontiguousarray(style, np.float32), sizes))
    return self.split.restyle[region](self.params, prepared, style, sizes)

  def transfer(self, prepared: dict[str, jax.Array], controls: np.ndarray,
               region: int | None = None) -> jax.Array:
    """Region images ``[R, B, H, W, 3]`` of a prepared batch, one per row (W1, W2, α) of ``controls``;
    ``region``: the one region a single row is for (the person's mixes its own style's attention)."""
    if region is not None:
      prepared = portrait.region_prepared(prepared, region)
    return self.split.transfer(self.params, prepared, np.asarray(controls, np.float32))

  def composite(self, prepared: dict[str, jax.Array], images: jax.Array, feather: float,
                keep_color: bool) -> dict[str, np.ndarray]:
    """The blend of region ``images`` (background, person) on the host, padding included."""
    out = self.split.composite(prepared, images, float(feather), bool(keep_color))
    return {k: np.asarray(v) for k, v in out.items()}

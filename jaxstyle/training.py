"""Machinery shared by the SANet and SegNet trainers: state, mesh, checkpoints, metrics, the loop.

- ``TrainState`` (step, trainable params, optimizer state, base RNG) is built abstractly with
  ``jax.eval_shape`` and materialised by ``jax.jit(out_shardings=...)``, replicated over the mesh's ``data``
  axis; frozen networks (the VGG encoder) are never part of it: trainers pass them to the step as a
  separate replicated argument, so they are neither optimised nor checkpointed.
- ``Checkpointer`` wraps an orbax ``CheckpointManager`` (every ``save_every`` steps, keep the last ``keep``);
  ``restore`` reads the latest checkpoint into the abstract state, so a resumed run continues at the same
  step with the same optimizer state and RNG. Data after a resume: see ``jaxstyle/data.py``.
- ``StopFlag`` turns SIGTERM/SIGINT into a flag the loop checks each step: it saves a checkpoint at the
  step reached, waits for it and returns.
- ``MetricWriter``: TensorBoard event files (tensorboardX, when installed), ``metrics.jsonl`` and one
  console line per interval with the loss terms, img/s and ETA.
- ``run_loop`` compiles the step ahead of time (the compile time is logged on its own), runs it, keeps
  the metrics on the device until each log interval and stops with ``NonFiniteError`` naming the first
  step whose metrics hold a NaN/Inf. Checkpoints are only written after that check.

Multi-host: ``initialize_distributed`` wires ``jax.distributed``; every process runs the same loop on its
share of the batch (``place_batch``); only process 0 writes metrics, images and exports, while all
processes take part in checkpointing. Nothing here keeps module-level state.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxstyle import portrait


@flax.struct.dataclass
class TrainState:
  step: jax.Array      # int32 scalar: number of updates applied
  params: Any          # trainable flax variables per network, e.g. {"decoder": {"params": ...}}
  opt_state: Any
  rng: jax.Array       # base key of the run; step t uses fold_in(rng, t)


# -------------------------------------------------------------------------------------- distributed


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` from flags, else the ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` environment variables; a no-op for a single process.

  Must run before the first JAX computation.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address or (num_processes or 1) == 1:
    return
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class _DropOrbaxInfo:
  """absl log filter: orbax's INFO lines (several per checkpoint) hide the progress lines."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or "orbax" not in record.pathname


def quiet_orbax() -> None:
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropOrbaxInfo) for f in handler.filters):
    handler.addFilter(_DropOrbaxInfo())


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def place_batch(mesh: jax.sharding.Mesh, local_batch: Any) -> Any:
  """This process's share of the global batch → global arrays sharded on the ``data`` axis."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def place_replicated(mesh: jax.sharding.Mesh, tree: Any) -> Any:
  """The same host data on every process → arrays replicated over the mesh (frozen params, datasets)."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def shard_batch(x: jax.Array) -> jax.Array:
  """Inside jit: constrains ``x`` to be split on the batch axis when a mesh is set (``jax.set_mesh``)."""
  if jax.sharding.get_abstract_mesh().empty:
    return x
  return jax.lax.with_sharding_constraint(x, P("data"))


def local_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> int:
  if global_batch % mesh.size:
    raise ValueError(f"batch size {global_batch} is not a multiple of the {mesh.size} devices")
  return global_batch // jax.process_count()


# -------------------------------------------------------------------------------------------- state


def abstract_train_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                         rng: jax.Array, mesh: jax.sharding.Mesh):
  """(abstract state with shardings, init function) for ``init_params(key) -> trainable variables``."""

  def init(rng):
    params_rng, run_rng = jax.random.split(rng)
    params = init_params(params_rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=run_rng)

  shapes = jax.eval_shape(init, rng)
  shardings = jax.tree.map(lambda _: replicated(mesh), shapes)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  return abstract, jax.jit(init, out_shardings=shardings)


def frozen_encoder(kind: str, model: portrait.ModelConfig, seed: int) -> tuple[dict, bool]:
  """(``{"encoder": variables}``, whether it is the ImageNet VGG-19 that exports may leave out).

  ``kind``: ``"imagenet"`` (``jaxstyle.pretrained``), ``"imagenet_normalised"`` (the same, rescaled by
  ``normalised_vgg``; exported with the weights) or ``"random"`` (tests and tiny models: drawn from
  ``seed + 1``, so every resume gets the same encoder).
  """
  if kind == "imagenet":
    from jaxstyle import pretrained  # pylint: disable=g-import-not-at-top
    return {"encoder": pretrained.load_vgg19_imagenet()}, True
  if kind == "imagenet_normalised":
    from jaxstyle import pretrained  # pylint: disable=g-import-not-at-top
    return {"encoder": normalised_vgg(pretrained.load_vgg19_imagenet(), model.encoder_blocks,
                                      pretrained.VGG19_IMAGENET_MEAN_ACTIVATION)}, False
  if kind == "random":
    return {"encoder": portrait.init_params(model, jax.random.PRNGKey(seed + 1), (32, 32))["encoder"]}, False
  raise ValueError(f"config.encoder must be 'imagenet' or 'random', not {kind!r}")


def normalised_vgg(variables: dict, blocks, mean_activation: dict[str, float]) -> dict:
  """VGG variables rescaled so that every ``relu{b}_1`` output is divided by ``mean_activation``.

  ReLU, max-pooling and zero or reflection padding commute with positive scaling, so dividing conv
  ``l``'s bias by ``s_l`` and multiplying its kernel by ``s_in / s_l`` divides its output by ``s_l``
  exactly. Every layer of block ``b`` gets ``s_l = mean_activation["relu{b}_1"]`` (1 for the input), so
  the network computes the same function up to one scalar per block (max-pool argmaxes unchanged): Gatys
  et al.'s normalised VGG, the scale SANet's loss weights and learning rate were tuned on.
  """
  params = dict(variables["params"])
  s_in = 1.0
  for b, block in enumerate(blocks, start=1):
    s = float(mean_activation[f"relu{b}_1"]) if f"relu{b}_1" in mean_activation else s_in
    for i in range(1, len(block) + 1):
      name = f"conv{b}_{i}"
      if name in params:
        p = params[name]
        params[name] = {"kernel": p["kernel"] * (s_in / s), "bias": p["bias"] / s}
      s_in = s
  return {**variables, "params": params}


def export_weights(directory, nets: dict, *, trainer: str, encoder: str, include_encoder: bool,
                   model_config: str, dtype: str, meta: dict) -> dict:
  """Adds ``nets`` to the weights folder ``directory`` (``weights.update``) under ``meta[trainer]``.

  SANet's transform/decoder and SegNet's decoder read the same encoder pass at inference, so they must
  be trained on the same encoder: a folder whose other trainer recorded a different ``encoder`` kind is
  refused rather than silently mixed.
  """
  from jaxstyle import weights as weights_lib  # pylint: disable=g-import-not-at-top
  directory = Path(directory)
  if weights_lib.holds_export(directory, trainer, meta.get("steps"), nets):
    return weights_lib.read_manifest(directory)     # a finished run restarted: nothing to redo
  if (current := weights_lib.manifest_or_none(directory)) is not None:   # None: missing or broken
    for other, info in current.get("meta", {}).items():
      if other != trainer and isinstance(info, dict) and info.get("encoder", encoder) != encoder:
        raise weights_lib.WeightsError(
            f"{directory}: the {other} networks there were trained on encoder {info['encoder']!r}, "
            f"this {trainer} run on {encoder!r}; export to another folder")
  return weights_lib.update(directory, nets, model_config=model_config, dtype=dtype,
                            include_encoder=include_encoder,
                            meta={trainer: {"encoder": encoder, **meta}})


def tree_norm(tree: Any) -> jax.Array:
  """Global l2 norm of a pytree, accumulated in float32."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def update_metrics(grads: Any, params: Any, updates: Any) -> dict[str, jax.Array]:
  return {"norm/grads": tree_norm(grads), "norm/params": tree_norm(params),
          "norm/updates": tree_norm(updates)}


# -------------------------------------------------------------------------------------- checkpoints


class Checkpointer:
  """Orbax ``CheckpointManager`` for a ``TrainState`` in ``directory``."""

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self.save_every = save_every
    self.manager = ocp.CheckpointManager(
        Path(directory).resolve(),
        options=ocp.CheckpointManagerOptions(save_interval_steps=save_every, max_to_keep=keep,
                                             create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state: TrainState) -> TrainState | None:
    step = self.manager.latest_step()
    if step is None:
      return None
    return self.manager.restore(step, args=self._ocp.args.StandardRestore(abstract_state))

  def should_save(self, step: int) -> bool:
    return step % self.save_every == 0

  def save(self, step: int, state: TrainState) -> bool:
    """Saves (asynchronously) unless ``step`` is already saved."""
    if step in self.manager.all_steps():
      return False
    return self.manager.save(step, args=self._ocp.args.StandardSave(state), force=True)

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


class StopFlag:
  """Sets ``requested`` on SIGTERM/SIGINT while active (main thread only); restores the old handlers.

  ``run_loop`` checks it before dispatching each step. Steps dispatch asynchronously, so the loop may be
  up to ``log_every`` steps ahead of the device when the signal comes: it stops at the step it has
  reached, waits for it, and saves that state.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested, self.signal = True, signal.Signals(signum).name
    logging.warning("%s received: stopping after this step with a checkpoint", self.signal)

  def should_stop(self) -> bool:
    """Whether any process was asked to stop (all processes must stop at the same step)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.requested))))

  def __enter__(self) -> StopFlag:
    if threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}


# ------------------------------------------------------------------------------------------ metrics


class MetricWriter:
  """TensorBoard (tensorboardX) + ``metrics.jsonl`` in ``workdir``; a no-op except on process 0."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool | None = None):
    self.workdir = Path(workdir)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    self.last: dict[str, float] = {}   # the latest value written of each scalar
    if not self.enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
    except ImportError:
      logging.warning("tensorboardX is not installed: metrics go to metrics.jsonl only")

  def scalars(self, step: int, scalars: dict[str, float]):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self.last.update(scalars)
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)

  def image(self, step: int, name: str, image: np.ndarray):
    """Writes a uint8 ``[H, W, 3]`` image to TensorBoard and ``workdir/samples/{name}_{step}.png``."""
    if not self.enabled:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    path = self.workdir / "samples" / f"{name}_{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    if self._tb is not None:
      self._tb.add_image(name, image, step, dataformats="HWC")
    return path

  def text(self, step: int, name: str, text: str):
    if self.enabled and self._tb is not None:
      self._tb.add_text(name, text, step)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


def image_grid(rows: Iterable[Iterable[np.ndarray]], pad: int = 2) -> np.ndarray:
  """uint8 grid from rows of float [0, 1] images of one size, ``pad`` white pixels between them."""
  rows = [[np.asarray(x, np.float32) for x in row] for row in rows]
  h, w = rows[0][0].shape[:2]
  n_cols = max(len(r) for r in rows)
  grid = np.ones((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad, 3), np.float32)
  for i, row in enumerate(rows):
    for j, x in enumerate(row):
      x = np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x
      grid[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = x
  return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def device_description() -> str:
  d = jax.devices()[0]
  return f"{jax.device_count()}× {getattr(d, 'device_kind', d.platform)} ({d.platform})"


# --------------------------------------------------------------------------------------------- loop


class NonFiniteError(FloatingPointError):
  """A loss, gradient or parameter norm became NaN or Inf."""


def check_finite(step: int, metrics: dict[str, Any]) -> None:
  bad = {k: float(v) for k, v in metrics.items() if not np.all(np.isfinite(v))}
  if bad:
    raise NonFiniteError(f"non-finite metrics at step {step}: {bad}; training stopped (the state after "
                         f"step {step} is not saved; the last checkpoint is finite)")


@dataclasses.dataclass
class LoopConfig:
  num_steps: int
  global_batch: int               # images per step, for img/s
  log_every: int = 50


@dataclasses.dataclass
class Hook:
  """``fn(step, state)`` every ``every`` steps and after the last step, on every process (writers are
  no-ops off process 0)."""
  every: int
  fn: Callable[[int, TrainState], None]
  at_end: bool = True


def run_loop(state: TrainState, step_fn: Callable, get_args: Callable[[int], tuple], loop: LoopConfig, *,
             static: dict | None = None, checkpointer: Checkpointer | None, writer: MetricWriter,
             hooks: Iterable[Hook] = (), stop: StopFlag | None = None,
             extra_metrics: Callable[[], dict] | None = None) -> TrainState:
  """Runs ``state, metrics = step_fn(state, *get_args(step), **static)`` up to ``loop.num_steps``.

  ``step_fn`` is jitted with ``static`` as its static arguments; it is compiled ahead of time once (the
  compile cache makes a second run in one process free). ``get_args(step)`` returns the step's other
  arguments (frozen params, a placed batch or the resident dataset). Metrics of the update that leads to
  step ``s`` are reported at ``s`` (so the first update is step 1). ``extra_metrics()`` (host-side, e.g.
  decode counters) is merged into each log line. On a stop request the state reached is saved.
  """
  start = int(jax.device_get(state.step))
  hooks = list(hooks)
  if start >= loop.num_steps:
    logging.info("already at step %d ≥ num_steps %d", start, loop.num_steps)
    for hook in hooks:   # end hooks again, so a missing or broken export is rewritten (export_weights
      if hook.at_end:    # skips one that is intact)
        hook.fn(start, state)
    return state
  args = get_args(start)
  logging.info("first compile, this can take a minute")
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, *args, **(static or {})).compile()
  compile_s = time.perf_counter() - t0
  logging.info("compiled the train step in %.1f s", compile_s)
  writer.scalars(start, {"time/compile_s": compile_s})

  pending: list[tuple[int, dict]] = []   # metrics still on the device
  checked: list[dict] = []                # fetched and finite, not yet logged
  t_interval, n_interval = time.perf_counter(), 0
  t_run = time.perf_counter()

  def check():
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      check_finite(s, m)
    checked.extend(fetched)
    pending.clear()

  def flush(step: int):
    nonlocal t_interval, n_interval
    check()
    if not checked:
      return
    means = {k: float(np.mean([m[k] for m in checked])) for k in checked[-1]}
    checked.clear()
    dt = time.perf_counter() - t_interval
    step_s = dt / max(n_interval, 1)
    means["time/step_s"] = step_s
    means["time/img_per_s"] = loop.global_batch * n_interval / dt
    if extra_metrics is not None:
      means.update(extra_metrics())
    writer.scalars(step, means)
    eta = format_duration(step_s * (loop.num_steps - step))
    terms = " ".join(f"{k.removeprefix('loss/')} {v:.4g}" for k, v in means.items()
                     if k.startswith(("loss", "train/")))
    logging.info("step %d/%d | %s | %.2f img/s | %.3f s/step | ETA %s", step, loop.num_steps, terms,
                 means["time/img_per_s"], step_s, eta)
    t_interval, n_interval = time.perf_counter(), 0

  step = start
  try:
    while step < loop.num_steps and not (stop is not None and stop.should_stop()):
      if step != start:
        args = get_args(step)
      state, metrics = compiled(state, *args)
      step += 1
      n_interval += 1
      pending.append((step, metrics))
      if step % loop.log_every == 0 or step == loop.num_steps:
        flush(step)
      if checkpointer is not None and checkpointer.should_save(step):
        check()                           # never save a state whose metrics are not finite
        checkpointer.save(step, state)
      for hook in hooks:
        if step % hook.every == 0:
          hook.fn(step, state)
    flush(step)
    if stop is not None and stop.requested:
      logging.warning("stopped by %s at step %d", stop.signal, step)
    if checkpointer is not None:
      checkpointer.save(step, state)
    for hook in hooks:
      if hook.at_end and step % hook.every:
        hook.fn(step, state)
  finally:
    if checkpointer is not None:
      checkpointer.manager.wait_until_finished()
    writer.scalars(step, {"time/wall_s": time.perf_counter() - t_run + compile_s})
    writer.flush()
  return state


def data_mesh() -> jax.sharding.Mesh:
  """The trainers' mesh: every device of every process on one ``data`` axis."""
  return portrait.data_mesh()

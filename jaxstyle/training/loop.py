"""The generic training loop shared by the SANet and SegNet trainers.

- ``TrainState`` (step, trainable params, optimizer state, base RNG) is built abstractly with
  ``jax.eval_shape`` and materialised by ``jax.jit(out_shardings=...)``, replicated over the mesh's
  ``data`` axis; frozen networks (the VGG encoder) are never part of it: trainers pass them to the step
  as a separate replicated argument, so they are neither optimised nor checkpointed.
- ``run_loop`` compiles the step ahead of time (the compile time is logged on its own), runs it, reports
  every ``log_every`` steps (``reporting.Reporter``: stops on the first NaN/Inf), saves checkpoints only
  after that check (``checkpointing.Checkpointer``, with the data iterators' positions) and stops at the
  same step on every process when asked (``distributed.StopFlag``), saving the state reached.
- ``start_run`` is the set-up every run shares: mesh, metric writer, checkpointer, closing them and the
  data sources at the end; ``Run.loop`` runs ``run_loop`` with the config's step counts.

Multi-host: every process runs the same loop on its share of the batch (``sharding.place_batch``); only
process 0 writes metrics, images and exports, while all processes take part in checkpointing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxstyle.program import sharding
from jaxstyle.training import checkpointing
from jaxstyle.training import distributed
from jaxstyle.training import reporting


@flax.struct.dataclass
class TrainState:
  step: jax.Array      # int32 scalar: number of updates applied
  params: Any          # trainable flax variables per network, e.g. {"decoder": {"params": ...}}
  opt_state: Any
  rng: jax.Array       # base key of the run; step t uses fold_in(rng, t)


def abstract_train_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                         rng: jax.Array, mesh: jax.sharding.Mesh):
  """(abstract state with shardings, init function) for ``init_params(key) -> trainable variables``."""

  def init(rng):
    params_rng, run_rng = jax.random.split(rng)
    params = init_params(params_rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=run_rng)

  shapes = jax.eval_shape(init, rng)
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), shapes)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  return abstract, jax.jit(init, out_shardings=shardings)


def tree_norm(tree: Any) -> jax.Array:
  """Global l2 norm of a pytree, accumulated in float32."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def update_metrics(grads: Any, params: Any, updates: Any) -> dict[str, jax.Array]:
  return {"norm/grads": tree_norm(grads), "norm/params": tree_norm(params),
          "norm/updates": tree_norm(updates)}


# --------------------------------------------------------------------------------------------- loop


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


def compile_step(step_fn: Callable, state: TrainState, args: tuple, static: dict | None,
                 writer: reporting.MetricWriter, step: int):
  """``step_fn`` lowered and compiled for these arguments; its compile time written at ``step``."""
  logging.info("first compile, this can take a minute")
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, *args, **(static or {})).compile()
  compile_s = time.perf_counter() - t0
  logging.info("compiled the train step in %.1f s", compile_s)
  writer.scalars(step, {"time/compile_s": compile_s})
  return compiled, compile_s


def run_end_hooks(hooks: Iterable[Hook], step: int, state: TrainState, *, all_hooks: bool) -> None:
  """The end hooks at ``step``: all of them, or those that did not just run at ``step``."""
  for hook in hooks:
    if hook.at_end and (all_hooks or step % hook.every):
      hook.fn(step, state)


def run_loop(state: TrainState, step_fn: Callable, get_args: Callable[[int], tuple], loop: LoopConfig, *,
             static: dict | None = None, checkpointer: checkpointing.Checkpointer | None,
             writer: reporting.MetricWriter, hooks: Iterable[Hook] = (),
             stop: distributed.StopFlag | None = None,
             extra_metrics: Callable[[], dict] | None = None) -> TrainState:
  """Runs ``state, metrics = step_fn(state, *get_args(step), **static)`` up to ``loop.num_steps``.

  ``step_fn`` is jitted with ``static`` as its static arguments and compiled once ahead of time.
  ``get_args(step)`` returns the step's other arguments (frozen params, a placed batch or the resident
  dataset). Metrics of the update that leads to step ``s`` are reported at ``s`` (so the first update
  is step 1). ``extra_metrics()`` is merged into each report. On a stop request the state is saved.
  """
  start, hooks = int(jax.device_get(state.step)), list(hooks)
  if start >= loop.num_steps:   # end hooks again, so a missing or broken export is rewritten
    logging.info("already at step %d ≥ num_steps %d", start, loop.num_steps)
    run_end_hooks(hooks, start, state, all_hooks=True)
    return state
  args = get_args(start)
  compiled, compile_s = compile_step(step_fn, state, args, static, writer, start)
  reporter = reporting.Reporter(writer, num_steps=loop.num_steps, global_batch=loop.global_batch,
                                extra=extra_metrics)
  t_run, step, previous = time.perf_counter(), start, None
  try:
    while step < loop.num_steps and not (stop is not None and stop.should_stop(step)):
      if step != start:
        args = get_args(step)
      state, metrics = compiled(state, *args)
      step += 1
      reporter.add(step, metrics)
      # At most one step queued behind the one running: the device never waits for the host, and a
      # stop request lands within two steps (a step can take a minute on a CPU), not ``log_every``.
      if previous is not None:
        jax.block_until_ready(previous)
      previous = metrics
      if step % loop.log_every == 0 or step == loop.num_steps:
        reporter.report(step)
      if checkpointer is not None and checkpointer.should_save(step):
        reporter.check()                      # never save a state whose metrics are not finite
        checkpointer.save(step, state)
      for hook in hooks:
        if step % hook.every == 0:
          hook.fn(step, state)
    reporter.report(step)
    if stop is not None and stop.requested:
      logging.warning("stopped by %s at step %d", stop.signal, step)
    if checkpointer is not None and step > start:   # at start: the data iterators are one batch on
      checkpointer.save(step, state)
    run_end_hooks(hooks, step, state, all_hooks=False)
  finally:
    if checkpointer is not None:
      checkpointer.wait()
    writer.scalars(step, {"time/wall_s": time.perf_counter() - t_run + compile_s})
    writer.flush()
  return state


# ------------------------------------------------------------------------------------------ set-up


@dataclasses.dataclass
class Run:
  """What every training run has. ``config`` needs ``num_steps``, ``batch_size``, ``log_every``,
  ``checkpoint_every`` and ``keep_checkpoints``."""
  config: Any
  workdir: Path
  mesh: jax.sharding.Mesh
  writer: reporting.MetricWriter
  checkpointer: checkpointing.Checkpointer
  t_start: float = dataclasses.field(default_factory=time.perf_counter)
  sources: list = dataclasses.field(default_factory=list)   # closed when the run ends

  def track(self, sources: dict[str, Any]) -> dict[str, Any]:
    """``sources``, closed (where they can be) when the run ends; those with an iterator state
    (``get_state``/``set_state``, e.g. Grain iterators) go into every checkpoint and are restored."""
    self.sources.extend(sources.values())
    self.checkpointer.attach({k: v for k, v in sources.items()
                              if hasattr(v, "get_state") and hasattr(v, "set_state")})
    return sources

  def elapsed_s(self) -> float:
    return time.perf_counter() - self.t_start

  def latest_metrics(self) -> dict[str, float]:
    """The latest logged losses and evaluations (for the export's record)."""
    return {k: v for k, v in self.writer.last.items() if k.startswith(("loss", "eval"))}

  def restore_or_init(self, abstract: TrainState, init: Callable) -> tuple[TrainState, bool]:
    """(the latest checkpoint's state, True), else (a new state from ``config.seed``, False)."""
    state = self.checkpointer.restore(abstract)
    if state is not None:
      return state, True
    return init(jax.random.PRNGKey(self.config.seed)), False

  def loop(self, state: TrainState, step_fn: Callable, get_args: Callable[[int], tuple], *, hp: Any,
           hooks: Iterable[Hook], extra_metrics: Callable[[], dict] | None = None) -> TrainState:
    """``run_loop`` to ``config.num_steps``, stopping cleanly on SIGTERM/SIGINT."""
    loop = LoopConfig(num_steps=self.config.num_steps, global_batch=self.config.batch_size,
                      log_every=self.config.log_every)
    with distributed.StopFlag() as stop:
      return run_loop(state, step_fn, get_args, loop, static={"hp": hp}, checkpointer=self.checkpointer,
                      writer=self.writer, hooks=hooks, stop=stop, extra_metrics=extra_metrics)


@contextlib.contextmanager
def start_run(config, workdir: str) -> Iterator[Run]:
  """A ``Run`` in ``workdir`` (checkpoints in ``workdir/checkpoints``) with its mesh set."""
  checkpointing.quiet_orbax()
  workdir = Path(workdir)
  run = Run(config=config, workdir=workdir, mesh=sharding.data_mesh(),
            writer=reporting.MetricWriter(workdir),
            checkpointer=checkpointing.Checkpointer(workdir / "checkpoints",
                                                    save_every=config.checkpoint_every,
                                                    keep=config.keep_checkpoints))
  try:
    with jax.set_mesh(run.mesh):
      yield run
  finally:
    for source in run.sources:
      if hasattr(source, "close"):
        source.close()
    run.checkpointer.close()
    run.writer.close()

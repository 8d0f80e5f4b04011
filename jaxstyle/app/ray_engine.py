"""Collections on a Ray cluster: a plan's pairs as a Ray Data dataset, stylised by stateful actors.

    with RayEngine(address=None) as engine:        # None: a local cluster in a temporary folder
      report = stylize_files.stylize(req, engine=engine)

The driver makes the ``Plan`` as the local engine does (pairs, refusals, what is written already: a
rerun skips it before the dataset exists), orders the pairs to do by shape bucket (the contents'
headers), and hands their indices to ``ray.data.Dataset.map_batches`` with an actor pool of
``Stylizer``. Each actor loads the weights once (``pipeline.load_runner``), keeps its programs
compiled across batches (the persistent compile cache shared as in a local run), and stylises each
batch with ``pipeline.compute``: the local engine's decoding, bucket batches, finite checks and atomic
writes. A content that cannot be read fails its own pairs inside the actor; every outcome goes back as
data and the driver records it (``writing.Records.record``): one run summary, the same fields, status
and last line as a local run, and the progress bar with images/s and ETA.

- Resources: on a cluster with GPUs one actor per GPU (``num_gpus=1``: Ray sets its
  ``CUDA_VISIBLE_DEVICES``); on CPUs one actor per node holding all of the node's CPUs in Ray's
  accounting, so Ray schedules nothing else beside it, and Ray's ``OMP_NUM_THREADS`` (that count) and
  XLA's thread pool (sized from the CPU affinity: every core) agree. ``actors``: a count or a range
  ``MIN-MAX`` for Ray Data to scale between.
- Failures: an actor whose process dies is restarted and its task retried (up to ``TASK_RETRIES``
  times, so a pair that kills its worker every time ends the job instead of looping); a retried task
  skips the pairs whose files its earlier attempt finished (with ``--overwrite`` it writes them
  again), and every file is written atomically, so each output is whole and none is lost. Any other
  error in an actor (weights that do not load, a non-finite result, a run of one pair with a bad
  content) is sent back and raised by the driver, as the local engine would raise it.
- The actors' own lines (compiling, dtype) come back with their results and are logged by the driver.
- Ray is imported only here and only when this engine is chosen (``pip install 'jaxstyle[ray]'``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import secrets
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jaxstyle.app import pipeline
from jaxstyle.app import plan as plan_lib
from jaxstyle.app import writing
from jaxstyle.io.cli import UsageError

INSTALL = "pip install 'jaxstyle[ray]'"
# Pairs per Ray task: a killed actor redoes at most these, and the bar moves in steps of them.
PAIRS_PER_TASK = 4
# Retries of a task whose actor died (Ray Data's default is without limit).
TASK_RETRIES = 3
# The driver's settings of the project (compile cache, dtype, debug) reach actors on other nodes.
FORWARDED_ENV_PREFIX = "JAXSTYLE_"
# Fault injection for tests: when this file exists after a pair is written, one actor removes it
# and ends its process at once, as a killed worker would.
CRASH_ONCE_ENV = "JAXSTYLE_RAY_CRASH_ONCE"


class EngineStopped(Exception):
  """The Ray job stopped before every pair was stylised (an actor died too often, the cluster went)."""


def import_ray():
  """``ray`` with ``ray.data``, or ``UsageError`` saying how to install them."""
  try:
    import ray  # pylint: disable=g-import-not-at-top
    import ray.data  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise UsageError(f"--engine ray needs Ray Data ({e.name} is not installed): {INSTALL}") from None
  return ray


def parse_actors(text: str | None) -> tuple[int, int] | None:
  """``"N"`` or ``"MIN-MAX"`` as (min, max) actors, None for one per GPU or node; else ``UsageError``."""
  if text is None or text == "auto":
    return None
  try:
    lo, hi = (int(part) for part in text.split("-")) if "-" in text else (int(text),) * 2
  except ValueError:
    lo = hi = 0
  if not 1 <= lo <= hi:
    raise UsageError(f"--ray-actors must be auto, a count N >= 1 or a range MIN-MAX, not {text!r}")
  return lo, hi


def actor_resources(nodes: Sequence[dict[str, float]], actors: tuple[int, int] | None
                    ) -> tuple[dict[str, float], tuple[int, int], str]:
  """What each actor reserves, the pool's (min, max) size and a phrase for the log, from the alive
  nodes' resources: one GPU each where there are GPUs, else a whole node's CPUs (shared evenly when
  more actors than nodes are asked for)."""
  gpus = int(sum(n.get("GPU", 0) for n in nodes))
  if gpus:
    lo, hi = actors or (gpus, gpus)
    if lo > gpus:   # Ray would wait for GPUs that are not there, without a word
      raise UsageError(f"--ray-actors: the Ray cluster has {gpus} GPU{'s' * (gpus > 1)} and an actor takes one; "
                       f"ask for at most {gpus} (or a range {min(lo, gpus)}-{hi} to grow into)")
    return {"num_gpus": 1}, (lo, hi), "one GPU each"
  cpus = [int(n["CPU"]) for n in nodes if n.get("CPU", 0) >= 1]
  if not cpus:
    raise UsageError("the Ray cluster has no CPU or GPU to run an actor on")
  lo, hi = actors or (len(cpus), len(cpus))
  each = max(1, min(cpus) // -(-hi // len(cpus)))
  return {"num_cpus": each}, (lo, hi), f"{each} CPU{'s' * (each > 1)} each"


def _crash_if_asked() -> None:
  marker = os.environ.get(CRASH_ONCE_ENV)
  if marker:
    try:
      os.remove(marker)   # one actor wins the removal: the crash happens once
    except FileNotFoundError:
      return
    os._exit(70)   # pylint: disable=protected-access


class Stylizer:
  """A Ray Data actor: the weights loaded once, then batches of pair indices into ``plan.todo``
  stylised as the local engine does; returns one row per pair (status, seconds, reason) and, in the
  first row, the actor's log lines and any error it raised."""

  def __init__(self, plan: plan_lib.Plan):
    self.plan = plan
    self.lines: list[str] = []
    self.compiled: set = set()
    self.error: BaseException | None = None
    try:
      self.runner = pipeline.load_runner(self.plan, self.lines.append)
    except Exception as e:  # pylint: disable=broad-except   raised by the driver, as a local run would
      # Raised from here, Ray would start the actor again and again.
      self.error = e

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    jobs = [self.plan.todo[i] for i in batch["pair"]]
    outcomes: dict[plan_lib.Job, tuple[str, float, str]] = {}

    def keep(job, status, seconds, reason):
      outcomes[job] = status, seconds, reason or ""
      _crash_if_asked()

    error = self.error
    if error is None:
      try:
        # A retried task: what its killed attempt finished is done, not redone.
        todo = plan_lib.pending(jobs, self.plan.request.overwrite)
        for job in jobs:
          if job not in todo:
            outcomes[job] = writing.DONE, 0.0, ""
        part = dataclasses.replace(self.plan, todo=todo, summary=None)
        with writing.Records(part, None, lambda _: None, keep) as records:
          pipeline.compute(part, self.runner, records, self.lines.append, self.compiled)
      except Exception as e:  # pylint: disable=broad-except   sent back and raised by the driver
        error = e
    lines, self.lines = self.lines, []
    rows = [outcomes.get(job, ("", 0.0, "")) for job in jobs]
    return {"pair": batch["pair"],
            "status": np.array([r[0] for r in rows], object),
            "seconds": np.array([r[1] for r in rows], np.float64),
            "reason": np.array([r[2] for r in rows], object),
            "log": np.array(["\n".join(lines)] + [""] * (len(jobs) - 1), object),
            "error": np.array([_pickled(error)] + [b""] * (len(jobs) - 1), object)}


def _pickled(error: BaseException | None) -> bytes:
  """``error`` with its traceback as a note, to raise again on the driver."""
  if error is None:
    return b""
  error.add_note("".join(traceback.format_exception(error)).rstrip())
  try:
    return pickle.dumps(error)
  except Exception:  # pylint: disable=broad-except   an exception that does not pickle
    return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}\n{error.__notes__[-1]}"))


class RayEngine:
  """``pipeline.Engine`` on Ray: joins the cluster at ``address`` (``auto``, ``ray://HOST:PORT``) or
  starts a local one in a temporary folder (None), which it removes on leaving. Inside a process
  already connected to Ray it uses that connection and leaves it open."""

  def __init__(self, address: str | None = None, actors: str | None = None):
    self.ray = import_ray()
    self.address, self.actors = address, parse_actors(actors)
    self._owned = False
    self._temp: str | None = None
    self._env: dict[str, str | None] = {}

  def __enter__(self) -> RayEngine:
    ray = self.ray
    if not ray.is_initialized():
      self._owned = True
      quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
      try:
        if self.address is None:
          self._start_local(quiet)
        else:
          ray.init(address=self.address, **quiet)
      except Exception as e:
        self.__exit__()
        if self.address is None or not isinstance(e, (ConnectionError, ValueError, RuntimeError)):
          raise
        raise UsageError(f"--ray-address {self.address}: cannot join the Ray cluster "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)   # Ray Data's own defaults of its options
      context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False   # the run's own bar counts pairs, with images/s and ETA
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)   # its notes go to the session's log files
    return self

  def _start_local(self, quiet: dict) -> None:
    """A one-machine cluster of this process's cores in a temporary folder. Its token is given to
    Ray in the environment: Ray would otherwise save one into ~/.ray for good."""
    self._temp = tempfile.mkdtemp(prefix="jaxstyle-ray-")
    if not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
      self._setenv(RAY_AUTH_TOKEN=secrets.token_hex(32))
    self._setenv(RAY_USAGE_STATS_ENABLED=os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
    # Its note that token authentication is on is about this run's own token.
    notes = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notes.level
    notes.setLevel(logging.ERROR)
    try:
      self.ray.init(num_cpus=len(os.sched_getaffinity(0)), _temp_dir=self._temp, include_dashboard=False,
                    **quiet)
    finally:
      notes.setLevel(level)

  def _setenv(self, **values: str) -> None:
    for k, v in values.items():
      self._env.setdefault(k, os.environ.get(k))
      os.environ[k] = v

  def __exit__(self, *exc) -> None:
    if self._owned:
      self.ray.shutdown()
      self._owned = False
    for k, v in self._env.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    self._env = {}
    if self._temp is not None:
      shutil.rmtree(self._temp, ignore_errors=True)
      self._temp = None

  def compute(self, plan: plan_lib.Plan, records: writing.Records, log: Callable[[str], None]) -> list[Path]:
    """Stylises ``plan.todo`` on the cluster, each outcome into ``records``; returns the files written."""
    ray = self.ray
    index = {job: i for i, job in enumerate(plan.todo)}
    order = [index[job] for unit in pipeline.bucket_units(plan, records) for job in unit.jobs]
    if not order:
      return []
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    resources, (lo, hi), each = actor_resources(nodes, self.actors)
    batch = max(PAIRS_PER_TASK, plan.request.batch_size)
    log(f"ray: {len(nodes)} node{'s' * (len(nodes) > 1)}, {lo if lo == hi else f'{lo}-{hi}'} "
        f"actor{'s' * (hi > 1)} ({each}), {len(order)} pairs in tasks of up to {batch}")
    pool = ray.data.ActorPoolStrategy(size=lo) if lo == hi else ray.data.ActorPoolStrategy(min_size=lo,
                                                                                          max_size=hi)
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    with warnings.catch_warnings():
      # Ray 2.60 takes max_task_retries only among the deprecated remote args (no named parameter).
      warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
      dataset = ray.data.from_items([{"pair": i} for i in order]).map_batches(
          Stylizer, fn_constructor_args=(plan,), batch_size=batch, compute=pool,
          batch_format="numpy", runtime_env={"env_vars": env}, max_task_retries=TASK_RETRIES, **resources)
    written: list[Path] = []
    # Ray prints the cluster's notes (a task retried, an actor died) on stdout, where the command
    # lists the files it wrote.
    try:
      with contextlib.redirect_stdout(sys.stderr):
        for rows in dataset.iter_batches(batch_size=None, batch_format="numpy"):
          self._record(rows, plan, records, log, written)
    except ray.exceptions.RayError as e:
      raise EngineStopped(f"the Ray job stopped ({str(e).strip().splitlines()[0]}); the pairs written "
                          "are kept: run the same command again to resume") from None
    # A killed attempt's temporary files, now that every task has ended. A stopped run leaves them to
    # the next run's plan (other actors may still be writing), as a killed local run does.
    plan_lib.remove_partials(plan.todo)
    return written

  @staticmethod
  def _record(rows: dict[str, np.ndarray], plan: plan_lib.Plan, records: writing.Records,
              log: Callable[[str], None], written: list[Path]) -> None:
    """One batch's results: its log lines, each pair's outcome, then the error it raised, if any."""
    for lines in rows["log"]:
      for line in filter(None, lines.split("\n")):
        log(line)
    errors = [pickle.loads(e) for e in rows["error"] if e]
    for i, status, seconds, reason in zip(rows["pair"], rows["status"], rows["seconds"], rows["reason"]):
      job = plan.todo[int(i)]
      if status:
        records.record(job, status, float(seconds), reason or None)
        if status == writing.DONE:
          written += job.outputs
      elif not errors:    # never silently short: a task without an error has every pair's outcome
        raise RuntimeError(f"the Ray actor returned no outcome for {job.outputs[0]}")
    if errors:
      raise errors[0]

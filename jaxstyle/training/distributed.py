"""Several training processes: stopping every process at the same step.

Processes are started by ``sharding.initialize_distributed`` (``jax.distributed``, shared with the CLI).

A stop request (SIGTERM from a scheduler, SIGINT from a terminal) must end every process of a job at
the same step, or their checkpoints disagree. With ``jax.distributed`` initialised, JAX's preemption
service already turns a SIGTERM to any process into one agreed step
(``multihost_utils.reached_preemption_sync_point``) without a collective per step; ``StopFlag`` uses it
and forwards SIGINT to it as a SIGTERM. A single process (no distributed client: the sync point is
never reached) handles both signals itself.
"""
from __future__ import annotations

import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils


def _distributed() -> bool:
  return jax.process_count() > 1     # only ``sharding.initialize_distributed`` makes it so


class StopFlag:
  """Answers "stop before this step?" for the training loop, the same on every process.

  Active inside ``with``: single-process, SIGTERM and SIGINT set ``requested``; multi-process, JAX's
  preemption service owns SIGTERM and SIGINT is re-sent as SIGTERM. The old handlers come back on exit.
  Steps dispatch asynchronously, so the loop may be a step ahead of the device when the signal comes
  (``loop.run_loop`` lets no more than one wait): it stops at the step it has reached, waits for it,
  and saves that state.
  """

  def __init__(self):
    self.requested = False
    self.signal = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested, self.signal = True, signal.Signals(signum).name
    logging.warning("%s received: stopping after this step with a checkpoint", self.signal)

  def _forward(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning("%s received: passed on as SIGTERM", signal.Signals(signum).name)
    os.kill(os.getpid(), signal.SIGTERM)

  def should_stop(self, step: int) -> bool:
    """Called once per step, with the same ``step`` on every process."""
    if _distributed() and multihost_utils.reached_preemption_sync_point(step):
      self.requested, self.signal = True, "SIGTERM"
      logging.warning("a process was asked to stop: all stop at step %d with a checkpoint", step)
    return self.requested

  def __enter__(self) -> StopFlag:
    if threading.current_thread() is not threading.main_thread():
      return self
    if _distributed():
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._forward)
    else:
      for s in (signal.SIGTERM, signal.SIGINT):
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

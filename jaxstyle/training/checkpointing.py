"""Checkpoints of a training run: the train state and the data iterators' positions, in one orbax step.

Each step directory holds the item ``state`` (``StandardSave`` of the ``TrainState``: replicated
arrays, restored into the abstract state with its shardings) and one item per attached data iterator
(Grain's ``CheckpointSave``: a small JSON per process with the iterator's ``get_state()``). Restoring
both from the same step is what makes a resumed run see exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from absl import logging

STATE = "state"


class _DropOrbaxInfo:
  """absl log filter: orbax's INFO lines (several per checkpoint) hide the progress lines."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or "orbax" not in record.pathname


def quiet_orbax() -> None:
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropOrbaxInfo) for f in handler.filters):
    handler.addFilter(_DropOrbaxInfo())


class Checkpointer:
  """Orbax ``CheckpointManager`` in ``directory``: every ``save_every`` steps, the last ``keep``.

  ``attach(iterators)`` adds named data iterators (objects with ``get_state``/``set_state``, e.g.
  ``grain.DatasetIterator``) to every later ``save`` and ``restore``.
  """

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self.directory = Path(directory).resolve()
    self.save_every = save_every
    self.iterators: dict[str, Any] = {}
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(save_interval_steps=save_every,
                                                             max_to_keep=keep, create=True))

  def attach(self, iterators: Mapping[str, Any]) -> None:
    if STATE in iterators:
      raise ValueError(f"a data iterator may not be called {STATE!r}")
    self.iterators.update(iterators)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state: Any) -> Any | None:
    """The latest state (None without a checkpoint); attached iterators are set to where it was."""
    step = self.manager.latest_step()
    if step is None:
      return None
    items = {STATE: self._ocp.args.StandardRestore(abstract_state)}
    if self.iterators:
      import grain  # pylint: disable=g-import-not-at-top
      for name, it in self.iterators.items():
        if (self.directory / str(step) / name).is_dir():
          items[name] = grain.checkpoint.CheckpointRestore(it)
        else:    # a checkpoint from before this iterator was saved: it starts where it was built
          logging.warning("checkpoint %d has no position for data iterator %r", step, name)
    return self.manager.restore(step, args=self._ocp.args.Composite(**items))[STATE]

  def should_save(self, step: int) -> bool:
    return step % self.save_every == 0

  def save(self, step: int, state: Any) -> bool:
    """Saves (the state asynchronously) unless ``step`` is already saved.

    The iterators' positions are read now, so they must be those of the batches up to ``step``.
    """
    if step in self.manager.all_steps():
      return False
    items = {STATE: self._ocp.args.StandardSave(state)}
    if self.iterators:
      import grain  # pylint: disable=g-import-not-at-top
      items.update({name: grain.checkpoint.CheckpointSave(it) for name, it in self.iterators.items()})
    return self.manager.save(step, args=self._ocp.args.Composite(**items), force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

"""Training entry points: ``python -m train.sanet`` and ``python -m train.segnet``.

Each parses ``--config`` (an ``ml_collections`` config file, ``train/configs/*.py[:variant]``, with
``--config.FIELD=VALUE`` overrides) and ``--workdir``, initialises ``jax.distributed`` when asked (flags
or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``), and calls the library's
``train_and_evaluate(config, workdir)``.
"""
from typing import Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples, weights.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for multi-process training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])


def run(train_and_evaluate: Callable) -> None:
  """``app.run`` of a main that calls ``train_and_evaluate(config, workdir)``."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxstyle import training  # pylint: disable=g-import-not-at-top
    training.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    logging.info("config:\n%s", _CONFIG.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)

  app.run(main)

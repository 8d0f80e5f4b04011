"""What both training commands share: flags, ``jax.distributed`` set-up and one-line refusals.

Each command parses ``--config`` (an ``ml_collections`` config file, ``train/configs/*.py[:variant]``,
with ``--config.FIELD=VALUE`` overrides) and ``--workdir``, initialises ``jax.distributed`` when asked
(flags or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``), and calls the
library's ``train_and_evaluate(config, workdir)``.

A refusal — a flag or config that does not parse, a missing data folder, a workdir that cannot be made,
weights to start from that do not fit, a NaN stop — ends with one ``error: ...`` line and exit status 2;
tracebacks only with ``--debug`` or ``JAXSTYLE_DEBUG=1`` (``jaxstyle.io.cli``). The flags are defined by
``run``, so importing this module (or ``train``) defines none.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxstyle.io import cli


def define_flags() -> dict[str, flags.FlagHolder]:
  holders = {
      "config": config_flags.DEFINE_config_file("config", None, "Training config file (path[:variant]).",
                                                lock_config=True),
      "workdir": flags.DEFINE_string("workdir", None,
                                     "Directory for checkpoints, metrics, samples, weights."),
      "coordinator_address": flags.DEFINE_string(
          "coordinator_address", None, "host:port of process 0 for multi-process training."),
      "num_processes": flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host)."),
      "process_id": flags.DEFINE_integer("process_id", None, "This process's index (multi-host)."),
      "debug": flags.DEFINE_boolean("debug", False, f"Print tracebacks (also: {cli.DEBUG_ENV}=1)."),
  }
  flags.mark_flags_as_required(["config", "workdir"])
  return holders


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or config file as one ``error:`` line and exit status 2
  (absl prints the usage of every flag and exits with 1)."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except   flags.Error, or a --config.FIELD override's
    if cli.debug_requested(argv[1:]):
      raise
    print(f"error: {flag_error(e)} (see --helpshort)", file=sys.stderr)
    sys.exit(2)


QUOTES = "\"'"


def flag_error(e: BaseException) -> str:
  """One line for a flag parsing error. ml_collections puts a config file's whole traceback in its
  message (only its last line, the error, is kept) and raises a ``KeyError`` / ``AttributeError``
  ``"'FIELD'\\nDid you mean ...?"`` for ``--config.NO_SUCH_FIELD=...``."""
  if isinstance(e, (AttributeError, KeyError)):
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    field, _, hint = text.partition("\n")
    what = f"the config has no field {field.strip(QUOTES)!r}"
    return what + (f"; {' '.join(hint.split())}" if hint.strip() else "")
  text = str(e)
  head, traceback, rest = text.partition("Traceback (most recent call last):")
  if traceback:
    last = [line for line in rest.splitlines() if line.strip()][-1:]
    text = head + " ".join(last)
  return " ".join(text.split())[:2000]


def refusals() -> tuple[type[BaseException], ...]:
  """What a training run refuses with one line: bad configs and data (ValueError, OSError), weights
  that do not fit, non-finite metrics. Imported here, after flag parsing, as the trainers do."""
  from jaxstyle.checkpoints import pretrained
  from jaxstyle.training import reporting
  from jaxstyle.io import weights  # pylint: disable=g-import-not-at-top
  return (ValueError, OSError, MemoryError, cli.UsageError, weights.WeightsError,
          pretrained.PretrainedError, reporting.NonFiniteError)


def start(argv: list[str], holders: dict[str, flags.FlagHolder], train_and_evaluate: Callable) -> int:
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top
  config = holders["config"].value
  config.to_dict()          # a config file that failed to load raises only when first used
  workdir = Path(holders["workdir"].value)
  try:                      # an unusable workdir fails here, not after compiling
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise cli.UsageError(f"--workdir {workdir}: cannot create it ({e.strerror})") from None
  sharding.initialize_distributed(holders["coordinator_address"].value, holders["num_processes"].value,
                                  holders["process_id"].value)
  logging.info("config:\n%s", config)
  train_and_evaluate(config, str(workdir))
  return 0


def run(train_and_evaluate: Callable) -> None:
  """Defines the flags and ``app.run``s a main that calls ``train_and_evaluate(config, workdir)``."""
  holders = define_flags()

  def main(argv) -> int:
    return cli.run(lambda: start(argv, holders, train_and_evaluate), refusals(),
                   debug=holders["debug"].value or cli.debug_requested([]))

  app.run(main, flags_parser=parse_flags)

"""What a run over a collection keeps track of: each process's share, the pairs done before, the summary.

- Share (``share``): process ``i`` of ``n`` takes the ``i``-th of ``n`` contiguous blocks of the pairs in
  their content-major order: a pure function of the list of pairs (the same on every host), balanced to
  one pair, and consecutive pairs of a process share their content, which is decoded once for them.
- Resume (``is_done``): a pair is done when every file it writes exists and is whole
  (``image_io.is_complete``). Files are written atomically, so a killed run leaves each one whole or
  absent; the temporary files it leaves behind are deleted by the next run (``image_io.remove_partials``).
- Summary (``Summary``): one JSON line per pair of this process's share, ``{"input", "style", "output",
  "status", "seconds"}`` plus ``"reason"`` (one line) for a failure; status is ``done``, ``skipped``
  (written before) or ``failed``. A line is appended (and flushed) once the pair's files are in place,
  so a killed run's summary never claims a file that is not there; each run rewrites the file. With
  several processes each writes its own, ``NAME.process-I-of-N.jsonl``.
- Processes meet twice (``meet``, ``totals``): at the start, where their collectives connect, and at
  the end, where they add up their counts.
- ``Report``: what a run did (this process and all processes), and ``PairsFailed`` when pairs failed.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import IO, Sequence, TypeVar

import numpy as np

from jaxstyle.io import image_io
from jaxstyle.program import sharding

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
STATUSES = (DONE, SKIPPED, FAILED)
# ``--summary``'s default in the CLI: OUTPUT/SUMMARY_NAME for a run of several pairs, none for one.
AUTO = "auto"
SUMMARY_NAME = "run_summary.jsonl"

T = TypeVar("T")


class PairsFailed(Exception):
  """Some pairs of a collection could not be stylised (each one's reason is in the run summary)."""


def share(items: Sequence[T], process: int, processes: int) -> Sequence[T]:
  """Process ``process``'s contiguous block of ``items`` (blocks differ in length by at most one)."""
  n = len(items)
  return items[n * process // processes:n * (process + 1) // processes]


def meet() -> None:
  """The start line of a job's processes, where their collectives connect (``sum_over_processes``)."""
  sharding.sum_over_processes(np.zeros(1))


def totals(counts: dict[str, int]) -> dict[str, int]:
  """``counts`` added up over every process of the job (a collective: every process calls it)."""
  summed = sharding.sum_over_processes(np.asarray([counts[s] for s in STATUSES]))
  return dict(zip(STATUSES, map(int, summed)))


def is_done(outputs: Sequence[Path]) -> bool:
  return all(image_io.is_complete(p) for p in outputs)


def summary_path(summary: str | None, output: str, n_pairs: int, process: int,
                 processes: int) -> Path | None:
  """Where this process writes its summary: ``summary``, or with ``AUTO`` ``OUTPUT/run_summary.jsonl``
  when there are several pairs (a single pair ends with its file or one error line); with several
  processes the name gets ``.process-I-of-N``."""
  if summary == AUTO:
    summary = str(Path(output) / SUMMARY_NAME) if n_pairs > 1 else None
  if summary is None:
    return None
  path = Path(summary)
  if processes > 1:
    path = path.with_name(f"{path.stem}.process-{process}-of-{processes}{path.suffix}")
  return path


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What became of one pair (a line of the summary)."""
  input: str
  style: str
  output: str
  status: str
  seconds: float
  reason: str | None = None

  def line(self) -> str:
    fields = dataclasses.asdict(self)
    fields["seconds"] = round(self.seconds, 4)
    return json.dumps({k: v for k, v in fields.items() if v is not None})


class Summary:
  """This process's outcomes: counted, and appended to a JSON-lines file when one is named.

  Thread-safe: the writing thread adds finished pairs while the main thread adds failed and skipped ones.
  """

  def __init__(self, path: Path | None):
    self.path = path
    self.counts = dict.fromkeys(STATUSES, 0)
    self.first_failure: str | None = None
    self._lock = threading.Lock()
    self._file: IO[str] | None = None
    if path is not None:
      path.parent.mkdir(parents=True, exist_ok=True)
      self._file = open(path, "w", encoding="utf-8")   # pylint: disable=consider-using-with

  def add(self, outcome: Outcome) -> None:
    with self._lock:
      self.counts[outcome.status] += 1
      if outcome.status == FAILED and self.first_failure is None:
        self.first_failure = outcome.reason
      if self._file is not None:
        self._file.write(outcome.line() + "\n")
        self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None

  def __enter__(self) -> Summary:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


@dataclasses.dataclass(frozen=True)
class Report:
  """What a run did: the files this process wrote, its counts and those of all processes, and the seconds
  this process worked (not counting its wait for the others at the end)."""
  written: list[Path]
  counts: dict[str, int]
  totals: dict[str, int]
  seconds: float
  summary: Path | None = None
  first_failure: str | None = None
  process: int = 0
  processes: int = 1

  def line(self) -> str:
    """One line for the end of a run: done, skipped and failed pairs (and where each is listed)."""
    def tally(c):
      n = sum(c.values())
      return f"{c[DONE]} done, {c[SKIPPED]} skipped, {c[FAILED]} failed of {n} pair{'s' * (n != 1)}"
    rate = self.counts[DONE] / self.seconds if self.seconds > 0 else 0.0
    text = f"{tally(self.counts)} in {self.seconds:.1f} s ({rate:.2f} images/s)"
    if self.processes > 1:
      text = f"process {self.process} of {self.processes}: {text}; all processes: {tally(self.totals)}"
    return text + (f"; summary: {self.summary}" if self.summary else "")

  def raise_for_failures(self) -> None:
    """``PairsFailed`` (one line) when a pair of any process failed."""
    failed = self.totals[FAILED]
    if failed:
      example = f" (first here: {self.first_failure})" if self.first_failure else ""
      where = f"; every pair's status is in {self.summary}" if self.summary else ""
      raise PairsFailed(f"{failed} of {sum(self.totals.values())} pairs failed{example}{where}")

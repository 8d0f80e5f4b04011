"""A benchmark's CSV that several runs fill: a run's rows replace the rows of the same key, others stay."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Hashable, Sequence


def merge_rows(path: Path, rows: Sequence[dict], key: Callable[[dict], Hashable], columns: Sequence[str],
               order: Callable[[Hashable], object] | None = None) -> None:
  """Writes ``path``: its rows and ``rows``, one per ``key`` (``rows`` win), sorted by ``order`` of the
  key when given (else in the order first seen)."""
  kept = {}
  if path.exists():
    with path.open() as f:
      kept = {key(r): r for r in csv.DictReader(f)}
  kept.update({key(r): r for r in rows})
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(columns), restval="")
    w.writeheader()
    w.writerows(kept[k] for k in (sorted(kept, key=order) if order else kept))

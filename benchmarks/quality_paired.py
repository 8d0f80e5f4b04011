"""Two runs of the quality harness compared pair by pair: is B worse than A beyond the standard errors?

    python -m benchmarks.quality --dtype float32 --out out/q_f32
    python -m benchmarks.quality --dtype bfloat16 --out out/q_bf16
    python -m benchmarks.quality_paired out/q_f32/quality.csv out/q_bf16/quality.csv --names float32,bfloat16

For each jaxstyle system and measure (face NME, background and person style gain, background and person
structure): the means of both runs, the mean of the per-pair differences B − A, its standard error
(the standard deviation of the differences / √n) and how many pairs moved each way; faces lost are
counted. NME is paired over the pairs whose face both runs found. A difference within one or two
standard errors of 0 is no loss. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Sequence

SYSTEMS = ("jaxstyle plain", "jaxstyle portrait")
MEASURES = (("nme", "face NME ↓"), ("background_style_gain", "background style gain ↑"),
            ("person_style_gain", "person style gain"), ("background_structure", "background structure ↑"),
            ("person_structure", "person structure"))


def read(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
  with path.open() as f:
    return {(r["system"], r["portrait"], r["painting"]): r for r in csv.DictReader(f)}


def number(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return float("nan")


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """Means of ``a`` and ``b`` and of ``b − a`` over the pairs where both are numbers, its standard
  error, and the count of pairs where b is above / below a."""
  both = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
  n = len(both)
  d = [y - x for x, y in both]
  mean = sum(d) / n if n else float("nan")
  sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1)) if n > 1 else float("nan")
  return {"n": n, "a": sum(x for x, _ in both) / n if n else float("nan"),
          "b": sum(y for _, y in both) / n if n else float("nan"), "diff": mean, "se": sd / math.sqrt(n) if n else
          float("nan"), "up": sum(v > 0 for v in d), "down": sum(v < 0 for v in d)}


def table(rows_a: dict, rows_b: dict, names: tuple[str, str]) -> str:
  keys = sorted(k for k in rows_a if k in rows_b and k[0] in SYSTEMS)
  lines = [f"| system | measure | {names[0]} | {names[1]} | {names[1]} − {names[0]} (SE) | pairs up / down |",
           "|---|---|---|---|---|---|"]
  for system in SYSTEMS:
    mine = [k for k in keys if k[0] == system]
    if not mine:
      continue
    lost = [sum(r[k]["face_lost"] == "True" for k in mine) for r in (rows_a, rows_b)]
    faces = sum(rows_a[k]["face_in_content"] == "True" for k in mine)
    lines.append(f"| {system} | faces lost ↓ | {lost[0]}/{faces} | {lost[1]}/{faces} | {lost[1] - lost[0]:+d} | |")
    for field, label in MEASURES:
      p = paired([number(rows_a[k][field]) for k in mine], [number(rows_b[k][field]) for k in mine])
      lines.append(f"| {system} | {label} | {p['a']:.4f} | {p['b']:.4f} | {p['diff']:+.4f} ({p['se']:.4f}) "
                   f"| {p['up']} / {p['down']} of {p['n']} |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("a", type=Path, help="quality.csv of run A (the reference)")
  p.add_argument("b", type=Path, help="quality.csv of run B")
  p.add_argument("--names", default="A,B", help="what to call the runs (A,B)")
  args = p.parse_args(argv)
  print(table(read(args.a), read(args.b), tuple(args.names.split(",", 1))))
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""``reading.plan_units``: every pair of a plan lands in exactly one unit, in whatever order it comes."""
import types

import numpy as np

from jaxstyle.app import reading
from jaxstyle.app.plan import Job
from test_cli import write_image


def test_pairs_in_bucket_order_are_all_kept(tmp_path):
  # The Ray engine hands an actor its pairs in bucket order, not content by content: a, b, a, b.
  contents = [write_image(tmp_path / f"{name}.png", (96, 64), seed=i) for i, name in enumerate("ab")]
  styles = [np.zeros((64, 64, 3), np.float32), np.zeros((128, 96, 3), np.float32)]   # two style buckets
  todo = [Job(c, s, tmp_path / f"{c}_{s}.png", None, None) for s in (0, 1) for c in (0, 1)]
  plan = types.SimpleNamespace(todo=todo, contents=contents, styles=styles, person_styles=None)
  failed = []
  units = reading.plan_units(plan, None, 0, lambda *a: failed.append(a))
  assert not failed
  assert sorted(j.image.name for u in units for j in u.jobs) == sorted(j.image.name for j in todo)
  assert {u.bucket[1] for u in units} == {((64, 64),), ((128, 128),)}
  for unit in units:       # one content and one bucket a unit
    assert len({j.content for j in unit.jobs}) == 1
    assert len({reading.style_buckets(plan, j.style) for j in unit.jobs}) == 1

"""Temporal mask smoothing: a centred window without lag that lowers the flicker of noisy masks."""
import numpy as np

from jaxstyle.program import temporal


def test_smoothing_keeps_count_constants_and_has_no_lag():
  ramp = [np.full((2, 2), t, np.float32) for t in range(10)]
  out = list(temporal.smooth_masks(iter(ramp)))
  assert len(out) == 10
  # A centred symmetric window maps a linear ramp onto itself away from the ends (no lag).
  np.testing.assert_allclose([o[0, 0] for o in out[2:8]], range(2, 8), atol=1e-5)
  const = list(temporal.smooth_masks(iter([np.full((3,), 0.7)] * 3)))
  np.testing.assert_allclose(np.stack(const), 0.7)
  assert len(list(temporal.smooth_masks(iter([np.zeros(1)])))) == 1


def test_smoothing_reduces_flicker_of_a_noisy_mask():
  rng = np.random.default_rng(0)
  truth = np.zeros((16, 16))
  truth[4:12, 4:12] = 1
  noisy = [np.clip(truth + 0.2 * rng.normal(size=truth.shape), 0, 1) for _ in range(30)]
  raw, smooth = temporal.Flicker(), temporal.Flicker()
  for m in noisy:
    raw.add(m)
  for m in temporal.smooth_masks(iter(noisy)):
    smooth.add(m)
  assert smooth.value < 0.6 * raw.value

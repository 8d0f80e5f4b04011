"""Shape buckets: sides rounded up, one square per style, a call's inputs padded, repeated and sized."""
import numpy as np

from jaxstyle.program import buckets
from jaxstyle.program import portrait


def test_sides_round_up_to_their_step():
  assert [buckets.bucket_side(n) for n in (1, 16, 17, 128, 129, 384, 385)] == [16, 16, 32, 128, 256, 384, 512]
  assert buckets.content_bucket((384, 200)) == (384, 256)
  assert buckets.style_bucket((100, 300)) == (384, 384)


def test_bucket_batch_pads_repeats_and_sizes():
  rng = np.random.default_rng(0)
  cs = [rng.uniform(size=(40, 30, 3)).astype(np.float32), rng.uniform(size=(48, 20, 3)).astype(np.float32)]
  ss = [rng.uniform(size=(20, 20, 3)).astype(np.float32)] * 2
  masks = [np.ones((40, 30), np.float32), np.zeros((48, 20), np.float32)]
  batch = buckets.bucket_batch(cs, ss, 4, ((48, 32), (32, 32)), masks)
  assert isinstance(batch, portrait.Batch)
  c, s, sizes, m = batch.content, batch.style, batch.sizes, batch.mask
  assert batch.style_person is None
  assert c.shape == (4, 48, 32, 3) and s.shape == (4, 32, 32, 3) and m.shape == (4, 48, 32)
  assert sizes.tolist() == [[40, 30, 20, 20], [48, 20, 20, 20], [48, 20, 20, 20], [48, 20, 20, 20]]
  np.testing.assert_array_equal(c[0, :40, :30], cs[0])
  np.testing.assert_array_equal(c[0, 40:42, :30], cs[0][38:36:-1])   # reflected, not zeros
  np.testing.assert_array_equal(c[3], c[1])                          # the last item repeated
  assert m[0].min() == 1 and m[1].max() == 0                          # masks edge-padded
  assert buckets.bucket_batch(cs, ss, 2, ((48, 32), (32, 32))).mask is None

"""The portrait program split where a control moves: ``prepare`` once per pair, ``render`` per control.

Tiny random-weight model; each jitted program compiles once in this module (a few seconds each).
"""
import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import model
from jaxstyle.program import buckets
from jaxstyle.program import portrait
from jaxstyle.program import sharding

CFG = model.MODEL_CONFIGS["tiny"]
MESH = sharding.data_mesh(jax.devices()[:1])
FEATHER = 0.03


@pytest.fixture(scope="module")
def pair():
  """One content and style padded into their buckets, as the CLI and the studio call the programs."""
  params = model.init_params(CFG, jax.random.key(0))
  rng = np.random.default_rng(0)
  c, s = rng.random((37, 45, 3), np.float32), rng.random((29, 33, 3), np.float32)
  hw_c, hw_s = buckets.content_bucket(c.shape[:2]), buckets.style_bucket(s.shape[:2])
  return params, buckets.bucket_batch([c], [s], 1, (hw_c, hw_s))


@pytest.fixture(scope="module")
def split():
  return portrait.make_split_programs(CFG, MESH)


@contextlib.contextmanager
def count_compiles():
  """Counts jit cache misses (traces) and XLA compiles inside the block."""
  counts = {"trace": 0, "compile": 0}
  events = {"/jax/core/compile/jaxpr_trace_duration": "trace",
            "/jax/core/compile/backend_compile_duration": "compile"}

  def listener(event, duration, **kwargs):
    if event in events:
      counts[events[event]] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def assert_outputs_close(got, want, atol=1e-5):
  assert sorted(got) == sorted(want)
  for k in want:
    np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), atol=atol, err_msg=k)


def test_split_equals_the_single_program(pair, split):
  """prepare → render (traced feather and preserve colour) == the CLI's one program (static ones)."""
  params, batch = pair
  controls = portrait.Controls(alpha_background=0.7).as_array()
  prepared = split.prepare(params, batch)
  for keep_color in (False, True):
    single = portrait.make_program(CFG, MESH, feather=FEATHER, keep_color=keep_color)
    want = single(params, batch, controls)
    assert_outputs_close(split.render(params, prepared, controls, FEATHER, keep_color), want)
  # The two parts of render, one region at a time (the studio's path), give the same.
  regions = [split.transfer(params, prepared, controls[r:r + 1]) for r in range(2)]
  got = split.composite(prepared, jnp.concatenate(regions), FEATHER, True)
  assert_outputs_close(got, want)


def test_split_with_a_user_mask_and_plain_mode(pair):
  params, batch = pair
  controls = portrait.Controls(alpha_person=0.3).as_array()
  mask = np.zeros(batch.content.shape[:3], np.float32)
  mask[:, 10:30, 5:25] = 1
  for mode, mode_batch in (("portrait", batch._replace(mask=mask)), ("plain", batch)):
    single = portrait.make_program(CFG, MESH, mode=mode, feather=FEATHER)
    split = portrait.make_split_programs(CFG, MESH, mode=mode)
    prepared = split.prepare(params, mode_batch)
    assert_outputs_close(split.render(params, prepared, controls, FEATHER, False),
                         single(params, mode_batch, controls))
    if mode == "portrait":
      np.testing.assert_array_equal(prepared["mask"], mask)   # kept unfeathered: the feather is a control


def test_no_control_recompiles_or_recomputes_the_pair(pair, split):
  """Every slider (six region controls, feather, preserve colour) reuses the compiled programs."""
  params, batch = pair
  prepared = split.prepare(params, batch)
  # A person-shaped mask: the random SegNet's speckle is thinner than the blend's edge inset, so the
  # person transfer would show nowhere and its controls would move nothing.
  person = jnp.zeros_like(prepared["mask"]).at[:, 8:, 10:35].set(1.0)
  prepared = {**prepared, "mask": jax.device_put(person, prepared["mask"].sharding)}
  base = portrait.Controls()
  first = split.render(params, prepared, base.as_array(), FEATHER, False)
  changes = [(dataclasses.replace(base, **{f.name: 0.35}), FEATHER, False)   # no default is 0.35
             for f in dataclasses.fields(base)]
  changes += [(base, 0.08, False), (base, 0.0, False), (base, FEATHER, True)]
  with count_compiles() as counts:
    outs = [split.render(params, prepared, c.as_array(), f, k) for c, f, k in changes]
    jax.block_until_ready(outs)
  assert counts == {"trace": 0, "compile": 0}
  assert split.render._cache_size() == 1 and split.prepare._cache_size() == 1
  for out, change in zip(outs, changes):   # each control does move the picture
    assert float(jnp.abs(out["image"] - first["image"]).max()) > 1e-4, change


def test_traced_feather_equals_the_static_one():
  """The filter sized by ``max_feather`` gives the blur of the feather's own filter (taps beyond ⌈3σ⌉
  are zero), for whole masks and inside the valid corner of bucket-padded ones (what is kept)."""
  mask = (jax.random.uniform(jax.random.key(3), (2, 40, 56)) > 0.5).astype(jnp.float32)
  hw = jnp.array([[40, 56], [33, 41]])
  traced = jax.jit(lambda m, f, h: portrait.feather_mask(m, f, h, portrait.MAX_FEATHER))
  whole = jax.jit(lambda m, f: portrait.feather_mask(m, f, max_feather=portrait.MAX_FEATHER))
  for feather in (0.0, 0.01, 0.05):
    got, want = traced(mask, feather, hw), portrait.feather_mask(mask, feather, hw)
    for i, (h, w) in enumerate(np.asarray(hw)):
      np.testing.assert_allclose(got[i, :h, :w], want[i, :h, :w], atol=1e-6)
    np.testing.assert_allclose(whole(mask, feather), portrait.feather_mask(mask, feather), atol=1e-6)
  # The blend weight thresholds two such blurs: the same with a traced feather.
  weight = jax.jit(lambda m, f, h: portrait.blend_weight(m, f, h, portrait.MAX_FEATHER, inset=2.0))
  for feather in (0.0, 0.02, 0.05):
    got, want = weight(mask, feather, hw), portrait.blend_weight(mask, feather, hw, inset=2.0)
    for i, (h, w) in enumerate(np.asarray(hw)):
      np.testing.assert_allclose(got[i, :h, :w], want[i, :h, :w], atol=1e-6)

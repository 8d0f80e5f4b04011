"""The oneDNN kernels (``jaxstyle/nets/onednn.py``, ``csrc/``) equal XLA's formulations, forward and backward;
``"auto"`` picks them exactly for bf16 on CPUs with bf16 units; without the extension the program falls back.

bf16 results are held to the lax formulation computed in float32 on the same bf16-rounded inputs: oneDNN
accumulates in float32 and rounds once, so the error is the output's own rounding (2⁻⁸ relative) plus
summation order. oneDNN has bf16 kernels from AVX-512 on (emulated below AVX512-BF16); on an AVX2-only
CPU its bf16 cases skip and the float32 ones, the ISA and the fallback tests still run (checked here with
``ONEDNN_MAX_CPU_ISA=AVX2``).
"""
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import conv as conv_lib
from jaxstyle.nets import decoder as decoder_lib
from jaxstyle.nets import onednn
from jaxstyle.nets import sanet

ROOT = Path(__file__).resolve().parent.parent
needs_extension = pytest.mark.skipif(onednn.unavailable() is not None,
                                     reason=f"oneDNN kernels not in use: {onednn.unavailable()}")
needs_bf16 = pytest.mark.skipif(onednn.conv_implementation(jnp.bfloat16, 8, 8, 16, 16) is None,
                                reason="oneDNN has no bf16 kernels for this CPU (below AVX-512)")
DTYPES = [jnp.float32, pytest.param(jnp.bfloat16, marks=needs_bf16)]
TOL = {jnp.float32: 1e-5, jnp.bfloat16: 1.5e-2}


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


def draw(shape, dtype, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32).astype(dtype)


def lax_conv(x, kernel, pads):
  return jax.lax.conv_general_dilated(x.astype(jnp.float32), kernel.astype(jnp.float32), (1, 1),
                                      (pads[:2], pads[2:]), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, pads, shape", [(3, (1, 1, 1, 1), (7, 9, 16, 8)), (3, (0, 0, 0, 0), (6, 5, 3, 20)),
                                             (2, (0, 1, 1, 0), (5, 6, 8, 12)), (1, (0, 0, 0, 0), (4, 4, 32, 16))])
def test_conv2d_with_bias_and_relu_equals_lax(dtype, k, pads, shape):
  h, w, c, d = shape
  x, kernel, bias = draw((2, h, w, c), dtype, 0), draw((k, k, c, d), dtype, 1), draw((d,), jnp.float32, 2)
  got = jax.jit(onednn.conv2d, static_argnums=(2, 4))(x, kernel, pads, bias, True)
  want = jax.nn.relu(lax_conv(x, kernel, pads) + bias)
  assert got.dtype == dtype and got.shape == want.shape
  assert rel_err(got, want) <= TOL[dtype]
  assert float(jnp.min(got)) == 0.0   # the ReLU ran


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_gradients_equal_lax(dtype):
  x, kernel, bias = draw((2, 6, 5, 8), dtype, 3), draw((3, 3, 8, 4), dtype, 4), draw((4,), jnp.float32, 5)
  pads = (0, 2, 1, 0)
  loss = lambda y: jnp.sum(jnp.sin(y.astype(jnp.float32)))
  got = jax.grad(lambda *a: loss(onednn.conv2d(a[0], a[1], pads, a[2], relu=True)), argnums=(0, 1, 2))(x, kernel, bias)
  want = jax.grad(lambda *a: loss(jax.nn.relu(lax_conv(a[0], a[1], pads) + a[2]).astype(dtype)),
                  argnums=(0, 1, 2))(x, kernel, bias)
  for g, w in zip(got, want):
    assert g.dtype == w.dtype
    # bf16: the cotangents themselves are rounded to bf16 before the products, as in PyTorch's bf16.
    assert rel_err(g, w) <= (1e-5 if dtype == jnp.float32 else 4e-2)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta, tb", [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_and_its_gradient_equal_einsum(dtype, ta, tb):
  a, b = draw((2, 5, 7) if not ta else (2, 7, 5), dtype, 6), draw((2, 7, 3) if not tb else (2, 3, 7), dtype, 7)
  ref = lambda a, b: jnp.einsum("bmk,bkn->bmn", (a.swapaxes(1, 2) if ta else a).astype(jnp.float32),
                                (b.swapaxes(1, 2) if tb else b).astype(jnp.float32))
  got = onednn.matmul(a, b, ta, tb, out_dtype=jnp.float32)
  assert got.shape == (2, 5, 3) and rel_err(got, ref(a, b)) <= TOL[dtype]
  loss = lambda f: lambda a, b: jnp.sum(jnp.cos(f(a, b)))
  grads = jax.grad(loss(lambda a, b: onednn.matmul(a, b, ta, tb, out_dtype=jnp.float32)), argnums=(0, 1))(a, b)
  for g, w in zip(grads, jax.grad(loss(ref), argnums=(0, 1))(a, b)):
    assert g.shape == w.shape and rel_err(g, w) <= (1e-5 if dtype == jnp.float32 else 2e-2)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("k", [1, 3])
def test_onednn_formulation_equals_same(dtype, padding, k):
  x, kernel, bias = draw((2, 7, 6, 8), dtype, 8), draw((k, k, 8, 5), dtype, 9), draw((5,), jnp.float32, 10)
  run = lambda f: conv_lib.conv(x, kernel, padding, f, bias, relu=True)
  want = conv_lib.conv(x.astype(jnp.float32), kernel.astype(jnp.float32), padding, "same", bias, relu=True)
  assert rel_err(run("onednn"), want) <= TOL[dtype]
  assert rel_err(run("same"), want) <= TOL[dtype]


@needs_extension
@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_onednn_upsample_conv_equals_conv_of_upsample(padding):
  x, kernel, bias = draw((2, 4, 5, 6), jnp.float32, 11), draw((3, 3, 6, 7), jnp.float32, 12), draw((7,), jnp.float32, 13)
  got = conv_lib.upsample_conv(x, kernel, padding, "onednn", bias, relu=True)
  up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  assert got.shape == (2, 8, 10, 7)
  assert rel_err(got, conv_lib.conv(up, kernel, padding, "xla", bias, relu=True)) <= 1e-5


@needs_extension
@needs_bf16
def test_attention_on_onednn_equals_dot_product_attention():
  q, k, v = draw((2, 40, 16), jnp.bfloat16, 14), draw((2, 24, 16), jnp.bfloat16, 15), draw((2, 24, 16), jnp.bfloat16, 16)
  keys = jnp.arange(24)[None] < jnp.asarray([[24], [17]])
  want = sanet.attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), key_mask=keys,
                         formulation="xla")
  got = sanet.attention(q, k, v, chunk=16, key_mask=keys, formulation="onednn")   # 3 chunks, last one padded
  assert got.dtype == jnp.bfloat16 and rel_err(got, want) <= 2e-2


@needs_extension
def test_decoder_gradients_agree_between_onednn_and_same():
  """A tiny decoder end to end in float32 (reflect padding, ×2 upsamples, ReLUs): the train step's path."""
  dec = decoder_lib.Decoder((("conv4_1", 8, True), ("conv3_1", 4, False), ("conv1_1", 3, False)))
  x = draw((1, 5, 4, 6), jnp.float32, 17)
  params = dec.init(jax.random.key(0), x)
  loss = lambda f: lambda p: jnp.sum(jnp.sin(dec.clone(formulation=f).apply(p, x)))
  got, want = jax.grad(loss("onednn"))(params), jax.grad(loss("same"))(params)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert rel_err(g, w) <= 1e-4


CACHE_COUNTS = ("hits", "misses", "uncached", "evictions", "reused_addresses")


def cache_delta(before):
  after = onednn.weight_cache_stats()
  return {k: after[k] - before[k] for k in CACHE_COUNTS}


def skip_unless_packed(dtype, c, d):
  """Skips where oneDNN's kernel for a 3×3 ``c → d`` convolution reads HWIO weights as they are (then
  nothing is packed, nor cached)."""
  before = onednn.weight_cache_stats()
  onednn.conv2d(jnp.zeros((1, 6, 6, c), dtype), jnp.zeros((3, 3, c, d), dtype), (1, 1, 1, 1)).block_until_ready()
  delta = cache_delta(before)
  if not delta["misses"] + delta["hits"] + delta["uncached"]:
    pytest.skip(f"oneDNN's {jnp.dtype(dtype).name} kernel for {c} → {d} channels packs no weights")


@pytest.fixture
def weight_cache_budget():
  """Sets the packed-weights cache's budget for one test, then restores it (the cache is process-wide)."""
  budget = onednn.weight_cache_stats()["budget"]
  yield onednn.set_weight_cache_budget
  onednn.set_weight_cache_budget(budget)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_weights_serve_only_equal_weights(dtype, weight_cache_budget):
  """Kernels of one shape in turn, one of them a single weight apart from another: each call computes
  with its own weights, packed once each, and gives the bits of packing on every call."""
  weight_cache_budget(512 << 20)
  skip_unless_packed(dtype, 32, 64)
  x = draw((1, 9, 8, 32), dtype, 20)
  k1, k2 = draw((3, 3, 32, 64), dtype, 21), draw((3, 3, 32, 64), dtype, 22)
  k3 = k1.at[1, 2, 5, 7].add(1)
  kernels = (k1, k2, k1, k3, k2, k1)
  run = jax.jit(lambda x, k: onednn.conv2d(x, k, (1, 1, 1, 1)))
  before = onednn.weight_cache_stats()
  got = [run(x, k) for k in kernels]
  delta = cache_delta(before)
  assert (delta["hits"], delta["misses"], delta["uncached"]) == (3, 3, 0)
  weight_cache_budget(0)
  for k, y in zip(kernels, got):
    np.testing.assert_array_equal(y, run(x, k))
    assert rel_err(y, lax_conv(x, k, (1, 1, 1, 1))) <= TOL[dtype]


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_weights_follow_contents_not_buffers(dtype, weight_cache_budget):
  """Kernels made inside one program: a scan puts each of them in its loop's one buffer (one address,
  other weights), and a second call with other kernels may get the first call's buffers."""
  weight_cache_budget(512 << 20)
  skip_unless_packed(dtype, 32, 64)
  x = draw((1, 7, 6, 32), dtype, 23)

  @jax.jit
  def run(kernels):
    return jax.lax.scan(lambda c, k: (c, onednn.conv2d(x, k * 2, (1, 1, 1, 1))), 0, kernels)[1]

  reused = onednn.weight_cache_stats()["reused_addresses"]
  for seed in (24, 25):
    kernels = draw((4, 3, 3, 32, 64), dtype, seed)
    before = onednn.weight_cache_stats()
    for _ in range(2):
      for k, y in zip(kernels, run(kernels)):
        assert rel_err(y, lax_conv(x, k * 2, (1, 1, 1, 1))) <= TOL[dtype]
    assert cache_delta(before)["misses"] == 4   # the second call found all four
  # What this test is about happened: weights came where others had been packed from (jaxlib 0.10
  # gives the scan's kernels one buffer), which a cache keyed by address would have answered wrongly.
  assert onednn.weight_cache_stats()["reused_addresses"] > reused


@needs_extension
@pytest.mark.parametrize("budget", ["one entry", "none"])
def test_packed_weights_within_the_budget(budget, weight_cache_budget):
  """A budget of one packing evicts (and refills) in turn; a budget of 0 packs on every call."""
  skip_unless_packed(jnp.float32, 32, 64)
  x, pads = draw((1, 8, 8, 32), jnp.float32, 26), (1, 1, 1, 1)
  k1, k2 = draw((3, 3, 32, 64), jnp.float32, 27), draw((3, 3, 32, 64), jnp.float32, 28)
  run = jax.jit(lambda x, k: onednn.conv2d(x, k, pads))
  weight_cache_budget(0)
  assert onednn.weight_cache_stats()["entries"] == 0
  before = onednn.weight_cache_stats()
  if budget == "one entry":
    weight_cache_budget(512 << 20)
    run(x, k1).block_until_ready()
    weight_cache_budget(onednn.weight_cache_stats()["bytes"])   # k1's raw and packed bytes, exactly
  for k in (k1, k2, k2, k1):
    assert rel_err(run(x, k), lax_conv(x, k, pads)) <= TOL[jnp.float32]
  delta = cache_delta(before)
  want = (2, 3, 0, 2) if budget == "one entry" else (0, 0, 4, 0)
  assert (delta["hits"], delta["misses"], delta["uncached"], delta["evictions"]) == want


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_training_steps_see_their_updated_weights(dtype, weight_cache_budget):
  """Three SGD steps on oneDNN follow the lax trajectory: the updated kernel, donated as the train
  steps donate their state, comes back in the last one's buffer and is packed anew; the frozen kernel
  and its flipped copy (for the gradient through it, made anew by every call) are found."""
  weight_cache_budget(512 << 20)
  skip_unless_packed(dtype, 32, 32)
  x, target = draw((1, 6, 5, 32), dtype, 29), draw((1, 6, 5, 32), jnp.float32, 30)
  frozen = draw((3, 3, 32, 32), dtype, 31) / 8
  pads = (1, 1, 1, 1)

  def step(conv):
    def loss(k):
      return jnp.mean((conv(conv(x, k, pads), frozen, pads).astype(jnp.float32) - target) ** 2)
    return jax.jit(lambda k: k - (0.05 * jax.grad(loss)(k).astype(jnp.float32)).astype(k.dtype),
                   donate_argnums=0)

  ours = step(lambda x, k, p: onednn.conv2d(x, k, p, relu=True))
  ref = step(lambda x, k, p: jax.nn.relu(lax_conv(x, k, p)).astype(x.dtype))
  k_ours, k_ref = draw((3, 3, 32, 32), dtype, 32) / 8, draw((3, 3, 32, 32), dtype, 32) / 8
  before = onednn.weight_cache_stats()
  for _ in range(3):
    k_ours, k_ref = ours(k_ours), ref(k_ref)
    assert rel_err(k_ours, k_ref) <= (1e-5 if dtype == jnp.float32 else 4e-2)
  delta = cache_delta(before)
  assert delta["hits"] >= 4 and delta["misses"] >= 3   # frozen ones found; each step's kernel packed
  assert delta["reused_addresses"] >= 2                # steps 2 and 3: new weights in the old buffer


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_decoder_with_two_sets_of_weights_gives_the_bits_of_packing_every_call(dtype, weight_cache_budget):
  """One compiled decoder (its ×2 upsamples' phase kernels are made inside the program, in buffers XLA
  may share), called with two sets of params in turn, cached and not."""
  dec = decoder_lib.Decoder((("conv4_1", 64, True), ("conv3_2", 64, False), ("conv3_1", 32, True),
                             ("conv1_1", 3, False)), formulation="onednn", dtype=dtype)
  x = draw((1, 6, 5, 32), jnp.float32, 33)
  params = [dec.init(jax.random.key(seed), x) for seed in (0, 1)]
  run = jax.jit(dec.apply)
  weight_cache_budget(0)
  want = [run(p, x) for p in params]
  weight_cache_budget(512 << 20)
  for p, w in [*zip(params, want)] * 2:
    np.testing.assert_array_equal(run(p, x), w)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding, c, d", [("zero", 3, 64), ("reflect", 64, 3)])
def test_the_benchmarked_small_channel_formulations_compute_the_same(dtype, padding, c, d):
  """``benchmarks/onednn_kernels.py`` times these against each other for VGG's conv1_1 and the decoder's
  last conv: each must be the same convolution."""
  from benchmarks import onednn_kernels  # pylint: disable=g-import-not-at-top
  x, kernel = draw((1, 9, 7, c), dtype, 34), draw((3, 3, c, d), dtype, 35) / 4
  bias = draw((d,), jnp.float32, 36)
  forms = onednn_kernels.small_formulations(padding, c, d)
  assert len(forms) >= 3
  want = conv_lib.conv(x.astype(jnp.float32), kernel.astype(jnp.float32), padding, "same", bias, relu=d > c)
  for name, f in forms.items():
    assert rel_err(jax.jit(f)(x, kernel, bias), want) <= TOL[dtype], name


@needs_extension
def test_weight_cache_budget_from_the_environment():
  out = run_python("from jaxstyle.nets import onednn; print('budget', onednn.weight_cache_stats()['budget'])",
                   {onednn.WEIGHT_CACHE_ENV: "3"})
  assert f"budget {3 << 20}" in out
  out = run_python("from jaxstyle.nets import onednn; print('budget', onednn.weight_cache_stats()['budget'])",
                   {onednn.WEIGHT_CACHE_ENV: "lots"})
  assert f"budget {onednn.DEFAULT_WEIGHT_CACHE_MB << 20}" in out and "is not a number of MiB" in out


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_auto_picks_onednn_only_for_bf16_on_a_cpu_with_bf16_units(dtype):
  want = "onednn" if dtype == jnp.bfloat16 and onednn.unavailable() is None and onednn.has_bf16_units() else "same"
  assert conv_lib.resolve_formulation("auto", dtype) == (want if jax.default_backend() == "cpu" else "xla")


def isa_flags() -> set[str]:
  text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
  return set(next((l.split(":")[1].split() for l in text.splitlines() if l.startswith("flags")), []))


@needs_extension
def test_cpu_isa_matches_the_cpu_flags():
  flags = isa_flags()
  isa = onednn.cpu_isa()
  assert ("amx" in isa) == ({"amx_bf16", "amx_tile"} <= flags)
  assert onednn.has_bf16_units() == bool({"avx512_bf16", "amx_bf16"} & flags)
  assert onednn.conv_implementation(jnp.float32, 16, 16, 32, 32) is not None
  if onednn.has_bf16_units():   # a JIT kernel, not oneDNN's reference loops
    assert not onednn.conv_implementation(jnp.bfloat16, 16, 16, 32, 32).startswith("ref")


def run_python(code: str, env: dict | None = None) -> str:
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout + out.stderr


@needs_extension
def test_without_bf16_instructions_auto_keeps_xla():
  """oneDNN capped below AVX512-BF16 (as on a CPU without it): bf16 programs keep the XLA path."""
  out = run_python("from jaxstyle.nets import conv, onednn; import jax.numpy as jnp\n"
                   "print('isa', onednn.cpu_isa(), conv.resolve_formulation('auto', jnp.bfloat16))",
                   {"ONEDNN_MAX_CPU_ISA": "AVX2"})
  assert "isa avx2 same" in out
  assert "bf16 convolutions run on XLA, not oneDNN: this CPU has no bf16 dot-product instructions" in out


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64")
                    or jax.default_backend() != "cpu",
                    reason="oneDNN's CPU wheels (the build requirement) exist for x86-64 Linux only")
def test_the_setup_builds_the_extension_where_onednn_has_wheels():
  """Where pyproject's build requirements apply, ``pip install`` must have built the kernels: the skips
  above would otherwise hide a broken build behind a passing suite."""
  assert onednn.unavailable() is None


def test_fallback_without_the_extension_says_why_and_computes_the_same():
  """The extension missing (as where it was not built): one line says why, bf16 convs run on XLA."""
  out = run_python(
      "import sys; sys.modules['jaxstyle.nets._onednn'] = None\n"
      "import jax, jax.numpy as jnp, numpy as np\n"
      "from jaxstyle.nets import conv, onednn\n"
      "x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 6, 6, 4)), jnp.bfloat16)\n"
      "k = jnp.ones((3, 3, 4, 2), jnp.bfloat16)\n"
      "m = conv.Conv(2, relu=True)\n"
      "print('resolved', conv.resolve_formulation('auto', jnp.bfloat16))\n"
      "v = m.init(jax.random.key(0), x)\n"
      "d = jnp.abs(m.apply(v, x).astype(float) - m.clone(formulation='same').apply(v, x).astype(float)).max()\n"
      "print('diff', float(d))\n"
      "try:\n  conv.conv(x, k, 'zero', 'onednn')\nexcept RuntimeError as e:\n  print('explicit:', e)\n")
  assert "resolved same" in out and "diff 0.0" in out
  lines = [l for l in out.splitlines() if "not oneDNN" in l]
  assert len(lines) == 1 and "the oneDNN extension did not load" in lines[0]
  assert "explicit: the oneDNN kernels cannot run: the oneDNN extension did not load" in out


def test_fallback_reason_is_logged_once(monkeypatch, caplog):
  conv_lib._onednn_bf16.cache_clear()
  monkeypatch.setattr(onednn, "unavailable", lambda: "a reason")
  with caplog.at_level(logging.WARNING):
    assert conv_lib.resolve_formulation("auto", jnp.bfloat16) in ("same", "xla")
    conv_lib.resolve_formulation("auto", jnp.bfloat16)
  conv_lib._onednn_bf16.cache_clear()
  if jax.default_backend() == "cpu":
    assert [r.getMessage() for r in caplog.records] == ["jaxstyle: bf16 convolutions run on XLA, not oneDNN: a reason"]

"""The oneDNN convolutions of the plain program, old against new formulation, alternated in one process.

Three parts, each timed as ``--repeats`` rounds of one call of every variant in turn, every other round
in reverse order (a change of load hits all alike; the CPU has 2 cores and other jobs may run), medians
and the median of the per-round ratios to the first variant:

- ``network``: VGG-19 to relu5_1 on a content and a style image and the decoder from relu4_1 — the plain
  program's convolutions but the transform's — in one jitted call, formulation ``"onednn"``, random
  weights, weights packed on every call (``pack``: the cache's budget 0, the old handler) against packed
  once and verified (``cache``: the default budget, filled by the warm-up). Beside the times, the
  handler's own timers per call (``onednn.weight_cache_stats``): ms packing, comparing, copying.
- ``layers``: every distinct convolution of that call (read off its jaxpr), alone, ``pack`` against
  ``cache``, with the kernel oneDNN picks for a zero-padded convolution of that size and kernel.
- ``small``: formulations of the two convolutions with 3 channels — VGG's conv1_1 (3 → 64, zero padding)
  and the decoder's last (64 → 3, reflection): oneDNN direct (what the program runs), XLA's
  convolution (``"same"``), an im2col (K = 27, or zero-padded to 32) into oneDNN's 1×1, and the thin side
  zero-padded to 16 channels; each first checked against the float32 formulation.

bf16 where oneDNN has bf16 kernels on this CPU (AMX, AVX512-BF16), else float32 with the ``"onednn"``
formulation named explicitly (``"auto"`` keeps XLA's convolutions there): the mechanism's cost, not the
program's. The CPU model and its bf16 flags go beside every row of ``--out``::

    python -m benchmarks.onednn_kernels --size 512 --repeats 5
"""
from __future__ import annotations

import argparse
import collections
import datetime
import os
import statistics
import time
from pathlib import Path

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np

from benchmarks import csv_table
from jaxstyle.nets import conv as conv_lib
from jaxstyle.nets import decoder as decoder_lib
from jaxstyle.nets import onednn
from jaxstyle.nets import vgg as vgg_lib


ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("date", "cpu", "isa", "dtype", "size", "part", "name", "variant", "ms", "vs_first", "repeats",
           "detail")
CACHE_COUNTS = ("hits", "misses", "uncached", "pack_s", "verify_s", "copy_s")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def cpu_description() -> str:
  """``"2 cores, Intel(R) Xeon(R) Processor, avx512_bf16 amx_bf16 amx_tile amx_int8"``: the model and
  its bf16 flags (this machine kind's CPU model varies; PERF_NOTES.md)."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    lines = []
  model = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), "unknown CPU")
  flags = next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), [])
  bf16 = " ".join(f for f in BF16_FLAGS if f in flags) or "no bf16 flags"
  return f"{os.cpu_count()} cores, {model}, {bf16}"


def load_average() -> str:
  return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def bench_dtype() -> jnp.dtype:
  """bf16 where oneDNN has bf16 convolutions here, else float32."""
  return jnp.dtype(jnp.bfloat16 if onednn.conv_implementation(jnp.bfloat16, 8, 8, 16, 16) else jnp.float32)


def alternated(calls: dict, repeats: int) -> dict[str, list[float]]:
  """Seconds per call of each of ``calls`` (name → (setup, thunk)), one call of each in turn per round,
  every other round in reverse order (a drifting load then favours none)."""
  times = {name: [] for name in calls}
  for r in range(repeats):
    for name, (setup, call) in list(calls.items())[::-1 if r % 2 else 1]:
      setup()
      start = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - start)
  return times


def summary(times: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
  """name → (median ms, median of the per-round ratios to the first name)."""
  first = next(iter(times.values()))
  return {name: (1e3 * statistics.median(ts), statistics.median(t / f for t, f in zip(ts, first)))
          for name, ts in times.items()}


def networks(dtype, size: int):
  """The jitted VGG (content, style) + decoder call, its arguments."""
  enc = vgg_lib.VGG(depth="relu5_1", formulation="onednn", dtype=dtype)
  dec = decoder_lib.Decoder(formulation="onednn", dtype=dtype)
  rng = np.random.default_rng(0)
  content, style = (jnp.asarray(rng.random((1, size, size, 3)), jnp.float32) for _ in range(2))
  params = (enc.init(jax.random.key(0), content[:, :32, :32]),
            dec.init(jax.random.key(1), jnp.zeros((1, 4, 4, 512))))

  def plain_convolutions(params, content, style):
    c, s = enc.apply(params[0], content), enc.apply(params[0], style)
    return dec.apply(params[1], c["relu4_1"]), c["relu5_1"], s["relu5_1"]

  return jax.jit(plain_convolutions), (params, content, style)


def budget_setter(nbytes: int):
  return lambda: onednn.set_weight_cache_budget(nbytes)


def network_part(args, dtype) -> list[dict]:
  call, call_args = networks(dtype, args.size)
  run = lambda: jax.block_until_ready(call(*call_args))
  budget = onednn.weight_cache_stats()["budget"]
  per_call = collections.defaultdict(list)

  def measured(name):
    def thunk():
      before = onednn.weight_cache_stats()
      run()
      after = onednn.weight_cache_stats()
      per_call[name].append({k: after[k] - before[k] for k in CACHE_COUNTS})
    return thunk

  run()   # compiles
  # "pack" empties the cache (budget 0), so each "cache" round starts with one untimed call filling it.
  calls = {"pack": (budget_setter(0), measured("pack")),
           "cache": (lambda: (onednn.set_weight_cache_budget(budget), run()), measured("cache"))}
  times = alternated(calls, args.repeats)
  onednn.set_weight_cache_budget(budget)
  rows = []
  for name, (ms, ratio) in summary(times).items():
    med = {k: statistics.median(d[k] for d in per_call[name]) for k in CACHE_COUNTS}
    detail = (f"per call: {med['hits']:.0f} hits, {med['misses']:.0f} misses, {med['uncached']:.0f} packed "
              f"uncached; handler ms: pack {1e3 * med['pack_s']:.1f}, verify {1e3 * med['verify_s']:.1f}, "
              f"copy {1e3 * med['copy_s']:.1f}")
    rows.append({"part": "network", "name": "VGG19→relu5_1 ×2 + decoder", "variant": name, "ms": ms,
                 "vs_first": ratio, "detail": detail})
  return rows


def conv_calls(jaxpr) -> collections.Counter:
  """(x shape, kernel shape, bias dtype, pads, relu) of every oneDNN forward convolution in ``jaxpr``."""
  found = collections.Counter()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "ffi_call" and eqn.params["target_name"] == "jaxstyle_onednn_conv":
      x, k, b = (v.aval for v in eqn.invars)
      attrs = dict(eqn.params["attributes"])
      pads = attrs["pads"]
      pads = tuple(int(p) for p in np.asarray(getattr(pads, "val", pads)))   # in a HashableArray
      found[x.shape, k.shape, b.dtype.name, pads, bool(attrs["relu"])] += 1
    for sub in jex.core.jaxprs_in_params(eqn.params):
      found.update(conv_calls(sub))
  return found


def layers_part(args, dtype) -> list[dict]:
  call, call_args = networks(dtype, args.size)
  found = conv_calls(jax.make_jaxpr(call)(*call_args).jaxpr)
  budget = onednn.weight_cache_stats()["budget"]
  rng = np.random.default_rng(1)
  rows = []
  for (xs, ks, bias_dtype, pads, relu), count in sorted(found.items(), key=lambda kv: -np.prod(kv[0][0])):
    x = jnp.asarray(rng.standard_normal(xs), jnp.float32).astype(dtype)
    k = jnp.asarray(rng.standard_normal(ks) / np.sqrt(np.prod(ks[:3])), jnp.float32).astype(dtype)
    b = jnp.zeros(ks[-1], bias_dtype)
    conv = jax.jit(lambda x, k, b, pads=pads, relu=relu: onednn.conv2d(x, k, pads, b, relu))
    run = lambda conv=conv, x=x, k=k, b=b: jax.block_until_ready(conv(x, k, b))
    run()
    calls = {"pack": (budget_setter(0), run),
             "cache": (lambda run=run: (onednn.set_weight_cache_budget(budget), run()), run)}
    name = f"{'×'.join(map(str, xs[1:]))} ⊛ {'×'.join(map(str, ks[:3]))}→{ks[3]} pads {pads}"
    name += " relu" if relu else ""
    impl = onednn.conv_implementation(dtype, xs[1], xs[2], xs[3], ks[3], ks[0])
    for variant, (ms, ratio) in summary(alternated(calls, args.repeats)).items():
      rows.append({"part": "layers", "name": name, "variant": variant, "ms": ms, "vs_first": ratio,
                   "detail": f"{count} per network call; oneDNN {impl}"})
    pack, cache = rows[-2:]
    print(f"  {name}: pack {pack['ms']:.2f} ms, cache {cache['ms']:.2f} ms ({cache['vs_first']:.3f}×)",
          flush=True)
  onednn.set_weight_cache_budget(budget)
  return rows


def im2col(x, kernel, padding: str, k_to: int):
  """The 9 taps of a 3×3 convolution as channels (``[B, H, W, 9C]``, zero-padded to a multiple of
  ``k_to``) and the matching 1×1 kernel."""
  h, w = x.shape[1:3]
  xp = conv_lib.pad(x, 1, padding)
  cols = [xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]
  k = kernel.reshape(1, 1, -1, kernel.shape[-1])
  extra = -k.shape[2] % k_to
  if extra:
    cols.append(jnp.zeros((*x.shape[:3], extra), x.dtype))
    k = jnp.pad(k, ((0, 0), (0, 0), (0, extra), (0, 0)))
  return jnp.concatenate(cols, axis=-1), k


def small_formulations(padding: str, c: int, d: int) -> dict:
  """name → f(x, kernel, bias) computing ``relu?(conv(x, kernel) + bias)`` (VGG's conv1_1 has a ReLU,
  the decoder's last conv none)."""
  relu = d > c
  same = lambda x, k, b: conv_lib.conv(x, k, padding, "same", b.astype(x.dtype), relu)
  out = {"oneDNN direct": lambda x, k, b: conv_lib.conv(x, k, padding, "onednn", b, relu), "XLA same": same}
  if c < 16:
    for k_to in (1, 32):
      out[f"im2col K={-(-9 * c // k_to) * k_to} + oneDNN 1×1"] = (
          lambda x, k, b, k_to=k_to: onednn.conv2d(*im2col(x, k, padding, k_to), (0,) * 4, b, relu))
    pad_c = lambda a, axis: jnp.pad(a, [(0, 16 - c if i == axis else 0) for i in range(a.ndim)])
    out["input channels zero-padded to 16 + oneDNN"] = (
        lambda x, k, b: conv_lib.conv(pad_c(x, 3), pad_c(k, 2), padding, "onednn", b, relu))
  if d < 16:
    pad_d = lambda a: jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, 16 - d)])
    out["output channels zero-padded to 16 + oneDNN"] = (
        lambda x, k, b: conv_lib.conv(x, pad_d(k), padding, "onednn", pad_d(b), relu)[..., :d])
  return out


def small_part(args, dtype) -> list[dict]:
  rows = []
  rng = np.random.default_rng(2)
  for name, padding, c, d in (("VGG conv1_1", "zero", 3, 64), ("decoder conv1_1", "reflect", 64, 3)):
    x = jnp.asarray(rng.standard_normal((1, args.size, args.size, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, c, d)) / np.sqrt(9 * c), jnp.float32)
    b = jnp.asarray(rng.standard_normal(d), jnp.float32)
    forms = {n: jax.jit(f) for n, f in small_formulations(padding, c, d).items()}
    xd, kd = x.astype(dtype), k.astype(dtype)
    want = np.asarray(forms["XLA same"](xd.astype(jnp.float32), kd.astype(jnp.float32), b), np.float64)
    errors = {}
    for n, f in forms.items():
      got = np.asarray(f(xd, kd, b), np.float64)
      errors[n] = np.abs(got - want).max() / np.abs(want).max()
    calls = {n: ((lambda: None), lambda f=f: jax.block_until_ready(f(xd, kd, b))) for n, f in forms.items()}
    impl = onednn.conv_implementation(dtype, args.size, args.size, c, d, 3)
    for variant, (ms, ratio) in summary(alternated(calls, args.repeats)).items():
      rows.append({"part": "small", "name": f"{name} ({c} → {d}, {padding})", "variant": variant, "ms": ms,
                   "vs_first": ratio,
                   "detail": f"max |Δ| / max |ref| {errors[variant]:.1e}; oneDNN direct is {impl}"})
  return rows


def write_csv(path: Path, rows: list[dict]) -> None:
  """``rows`` replace the file's rows of the same (cpu, dtype, size, part, name, variant); others are kept."""
  csv_table.merge_rows(path, rows, lambda r: (r["cpu"], r["dtype"], str(r["size"]), r["part"], r["name"],
                                              r["variant"]), COLUMNS)


PARTS = {"network": network_part, "layers": layers_part, "small": small_part}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--parts", type=lambda s: s.split(","), default=list(PARTS))
  p.add_argument("--out", default=str(ROOT / "docs" / "runs" / "onednn_kernels.csv"))
  return p.parse_args(argv)


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  if onednn.unavailable():
    raise SystemExit(f"the oneDNN kernels cannot run here: {onednn.unavailable()}")
  dtype = bench_dtype()
  cpu = cpu_description()
  kernel = onednn.conv_implementation(dtype, 128, 128, 256, 256)
  isa = f"{onednn.cpu_isa()}; {dtype.name} 3×3 conv on {kernel}"
  note = "" if dtype == jnp.bfloat16 else " (no bf16 kernels on this CPU: float32, 'onednn' named)"
  print(f"{datetime.date.today()}, {cpu}, oneDNN ISA {isa}, {dtype.name}{note}, {args.size}², median of "
        f"{args.repeats} alternated calls, load average {load_average()}",
        flush=True)
  rows = []
  for part in args.parts:
    start = time.perf_counter()
    for row in PARTS[part](args, dtype):
      row.update(date=str(datetime.date.today()), cpu=cpu, isa=isa, dtype=dtype.name, size=args.size,
                 repeats=args.repeats, ms=round(row["ms"], 2), vs_first=round(row["vs_first"], 3))
      rows.append(row)
      if part != "layers":
        print(f"  {part}: {row['name']}, {row['variant']}: {row['ms']} ms ({row['vs_first']}×) "
              f"{row['detail']}", flush=True)
    print(f"  ({part}: {time.perf_counter() - start:.0f} s; load average {load_average()})", flush=True)
    write_csv(Path(args.out), rows)
  print(f"wrote {args.out}")
  return rows


if __name__ == "__main__":
  main()

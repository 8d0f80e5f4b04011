"""Speed and memory of the portrait program (``jaxstyle.program.portrait.make_program``) against PyTorch eager.

Random float32 weights of a ``model.MODEL_CONFIGS`` model (``"default"``: real size;
``model.init_params``), random content and style images of each ``--sizes`` side, one device. For every
size:

- JAX: compile time (``lower().compile()``), then the median of ``--repeats`` timed calls after one
  warm-up call, per image; GFLOP per image from XLA's cost analysis; memory: on accelerators the
  device's ``peak_bytes_in_use`` (sizes run in increasing order, so it is this size's peak), on CPU the
  peak RSS increase of one call in a fresh subprocess (see ``measure_rss_peak``); always XLA's own
  ``memory_analysis()`` (temp + output buffers of the compiled program).
- PyTorch (``--torch``, CPU, float32): the same graph in eager mode (``torch_portrait.py``, weights
  copied from the JAX params, outputs checked equal), timed interleaved with JAX — one JAX call, one
  torch call, repeated — so a change of machine load hits both alike; memory as JAX's on CPU.

Prints a markdown table; ``--csv``/``--md`` also write it. Typical use (CPU, the issue's comparison)::

    python -m benchmarks.portrait_bench --sizes 256,512,1024 --repeats 5

and on a GPU (no torch): ``python -m benchmarks.portrait_bench --sizes 512,1024 --dtype bfloat16 --no-torch``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import scaling
from jaxstyle.nets import conv
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding

MIB = 2**20
# glibc keeps freed memory mapped unless told otherwise, which would hide a call's peak behind memory
# that compilation or set-up freed; with these the RSS follows the live allocations.
RSS_PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


@dataclasses.dataclass
class Row:
  size: int
  batch: int
  dtype: str
  formulation: str
  device: str
  jax_ms_per_img: float
  jax_compile_s: float
  gflop_per_img: float | None
  jax_peak_mib: float | None          # device peak, or RSS increase of one call on CPU
  jax_peak_kind: str
  xla_temp_mib: float | None          # compiled.memory_analysis(): temp + output buffers
  torch_ms_per_img: float | None = None
  torch_peak_mib: float | None = None
  max_abs_err: float | None = None    # |JAX − torch| of the output image
  load_before: float | None = None
  load_after: float | None = None

  @property
  def ratio(self) -> float | None:
    """torch / JAX time: ≥ 1 means JAX is faster."""
    return None if self.torch_ms_per_img is None else self.torch_ms_per_img / self.jax_ms_per_img


def fmt(x, spec=".0f", none="n/a") -> str:
  return none if x is None else format(x, spec)


def load_average() -> float | None:
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def inputs(size: int, batch: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  content = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
  style = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
  return content, style, portrait.Controls().as_array()


def model_config(args, dtype: str) -> model_lib.ModelConfig:
  return dataclasses.replace(model_lib.MODEL_CONFIGS[args.model], dtype=dtype, formulation=args.formulation)


def build_jax(args, size: int, dtype: str):
  """(compiled program, its arguments, compile seconds, GFLOP per image, XLA temp+output MiB, params)."""
  cfg = model_config(args, dtype)
  device = jax.devices()[0]
  mesh = sharding.data_mesh([device])
  params = jax.device_put(scaling.random_params(cfg), device)
  content, style, controls = inputs(size, args.batch)
  call_args = (params, jax.device_put(portrait.Batch(content, style), device), controls)
  t0 = time.perf_counter()
  compiled = portrait.make_program(cfg, mesh).lower(*call_args).compile()
  compile_s = time.perf_counter() - t0
  flops = profiling.counted_flops(cfg, lambda c: portrait.make_program(c, mesh).lower(*call_args))
  flops = None if flops is None else flops / args.batch / 1e9
  temp, _ = profiling.compiled_memory_mib(compiled)
  return compiled, call_args, compile_s, flops, temp, params


def build_torch(args, params, size: int):
  from benchmarks import torch_portrait as tp  # pylint: disable=g-import-not-at-top
  tp.configure_torch()
  model = tp.Portrait(jax.device_get(params), model_config(args, "float32"))
  content, style, controls = inputs(size, args.batch)
  torch_args = (tp.to_nchw(content), tp.to_nchw(style), tp.torch.from_numpy(controls))
  return model, torch_args


def run_jax(compiled, call_args):
  return jax.block_until_ready(compiled(*call_args))


def run_torch(model, torch_args):
  from benchmarks import torch_portrait as tp  # pylint: disable=g-import-not-at-top
  with tp.torch.inference_mode():
    return model(*torch_args)


def measure_rss_peak(args, impl: str, size: int, dtype: str) -> float | None:
  """Peak RSS increase (MiB) of running ``impl`` in a fresh subprocess (``_rss_probe``).

  The subprocess builds (JAX: compiles), records its resident set, resets the kernel's high-water mark
  (``/proc/self/clear_refs``), makes two calls and reports the high-water mark minus the recorded base:
  the memory running needs, caches the first call sets up (XLA's buffers, oneDNN's) included, weights,
  inputs and compilation excluded.
  """
  cmd = [sys.executable, "-m", "benchmarks.portrait_bench", "--_rss-probe", impl, "--sizes", str(size),
         "--batch", str(args.batch), "--dtype", dtype, "--model", args.model,
         "--formulation", args.formulation]
  env = {**os.environ, **RSS_PROBE_ENV}
  try:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.probe_timeout,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]
  except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as e:
    print(f"  (RSS probe {impl} {size}: failed: {str(e)[:200]})", flush=True)
    return None


def rss_probe(args, impl: str) -> None:
  size, dtype = args.sizes[0], args.dtype[0]
  if impl == "jax":
    compiled, call_args, *_ = build_jax(args, size, dtype)
    call = lambda: run_jax(compiled, call_args)
  else:
    model, torch_args = build_torch(args, scaling.random_params(model_config(args, "float32")), size)
    call = lambda: run_torch(model, torch_args)
  base = profiling.process_memory_bytes("VmRSS")
  if not profiling.reset_peak_rss():
    raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs): no memory probe here")
  call()
  call()
  print(json.dumps({"peak_mib": (profiling.process_memory_bytes("VmHWM") - base) / MIB}))


def bench_size(args, size: int, dtype: str) -> tuple[Row, str]:
  """(the row, a markdown profile of one call or "")."""
  device = jax.devices()[0]
  load_before = load_average()
  compiled, call_args, compile_s, gflop, temp, params = build_jax(args, size, dtype)
  t0 = time.perf_counter()
  out = run_jax(compiled, call_args)                        # warm-up
  first_s = time.perf_counter() - t0
  use_torch = args.torch and device.platform == "cpu" and dtype == "float32"
  model = torch_args = None
  err = None
  if use_torch:
    from benchmarks import torch_portrait as tp  # pylint: disable=g-import-not-at-top
    model, torch_args = build_torch(args, params, size)
    err = tp.max_abs_errors(out, run_torch(model, torch_args))["image"]   # warm-up + check
  jax_t, torch_t = [], []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    run_jax(compiled, call_args)
    jax_t.append(time.perf_counter() - t0)
    if use_torch:
      t0 = time.perf_counter()
      run_torch(model, torch_args)
      torch_t.append(time.perf_counter() - t0)
  per_img = lambda ts: statistics.median(ts) * 1e3 / args.batch
  if device.platform == "cpu":
    peak_kind = "peak RSS increase of two calls in a fresh subprocess, after set-up (and compile)"
    jax_peak = measure_rss_peak(args, "jax", size, dtype) if args.memory else None
    torch_peak = measure_rss_peak(args, "torch", size, dtype) if args.memory and use_torch else None
  else:
    peak, peak_kind = profiling.peak_memory([device])
    jax_peak, torch_peak = (None if peak is None else peak / MIB), None
  row = Row(size=size, batch=args.batch, dtype=dtype, formulation=args.formulation,
            device=profiling.device_name(device), jax_ms_per_img=per_img(jax_t), jax_compile_s=compile_s,
            gflop_per_img=gflop, jax_peak_mib=jax_peak, jax_peak_kind=peak_kind, xla_temp_mib=temp,
            torch_ms_per_img=per_img(torch_t) if torch_t else None, torch_peak_mib=torch_peak,
            max_abs_err=err, load_before=load_before, load_after=load_average())
  print(f"  {size}² {dtype}: JAX {row.jax_ms_per_img:.1f} ms/img (first call {first_s:.1f} s, compile "
        f"{compile_s:.1f} s)" + (f", torch {row.torch_ms_per_img:.1f} ms/img, ratio {row.ratio:.2f}, "
                                 f"max |Δimage| {err:.1e}" if torch_t else ""), flush=True)
  profile_md = ""
  if args.profile is not None and args.profile in (0, size):
    profile_md = profile_call(compiled, call_args, f"{size}² {dtype}, batch {args.batch}")
    print(profile_md, flush=True)
  return row, profile_md


def profile_call(compiled, call_args, label: str, top: int = 12) -> str:
  """Traces one call; markdown tables of op time per network and per layer (flax module path).

  Ops are attributed through the ``op_name`` metadata of the compiled HLO. On accelerators the device
  ops are summed (they run one after another on a stream); on CPU the XLA worker threads' ops are
  summed, which can exceed the wall time when two ops run at once.
  """
  import re  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  try:
    from jax._src.lib import _profile_data  # pylint: disable=g-import-not-at-top
    hlo = compiled.as_text()
    inst2op = {m.group(1): "" for m in re.finditer(r'^\s*(?:ROOT )?%?([\w.\-]+) = ', hlo, re.M)}
    inst2op.update({m.group(1): m.group(2) for m in re.finditer(
        r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name="([^"]+)"', hlo, re.M)})
    with tempfile.TemporaryDirectory() as tmp:
      jax.profiler.start_trace(tmp)
      run_jax(compiled, call_args)
      jax.profiler.stop_trace()
      path = sorted(Path(tmp).rglob("*.xplane.pb"))[-1]
      data = _profile_data.ProfileData.from_file(str(path))
    per_layer: dict[str, float] = {}
    device_planes = [p for p in data.planes if p.name.startswith("/device:")
                     and not p.name.startswith("/device:CUSTOM")]
    for plane in device_planes or [p for p in data.planes if p.name == "/host:CPU"]:
      lines = list(plane.lines)
      if device_planes:
        ops = [l for l in lines if l.name == "XLA Ops"]
        lines = ops or [l for l in lines if l.name.startswith("Stream")]
      else:
        lines = [l for l in lines if "XLAEigen" in l.name]
      for line in lines:
        for ev in line.events:
          stats = dict(ev.stats)
          name = str(stats.get("hlo_op", ev.name)).lstrip("%")
          op = inst2op.get(name)
          if op is None and not device_planes:
            continue                        # thread-pool bookkeeping, not an XLA op
          if not op:                        # an op without metadata (e.g. a layout copy's fusion)
            op = str(stats.get("tf_op", "")) or "other/" + re.sub(r"[.\d]+$", "", name)
          parts = [p for p in op.split("/") if p and not p.startswith(("jit(", "pjit("))]
          key = "/".join(parts[:2]) if len(parts) > 1 else "(glue) " + (parts[0] if parts else name)
          per_layer[key] = per_layer.get(key, 0.0) + ev.duration_ns / 1e6
  except Exception as e:  # pylint: disable=broad-except  (a profile is a bonus, never a failure)
    return f"(profile of {label} failed: {' '.join(str(e).split())[:200]})\n"
  total = sum(per_layer.values())
  if not total:
    return f"(profile of {label}: no ops found)\n"
  per_net: dict[str, float] = {}
  for k, v in per_layer.items():
    net = k.split("/")[0] if "/" in k and not k.startswith("(glue)") else "other"
    per_net[net] = per_net.get(net, 0.0) + v
  lines = [f"Profile of one call, {label}: op time {total:.1f} ms", "",
           "| network | ms | share |", "|---|---|---|"]
  lines += [f"| {k} | {v:.1f} | {v / total:.0%} |" for k, v in sorted(per_net.items(), key=lambda kv: -kv[1])]
  lines += ["", "| layer | ms | share |", "|---|---|---|"]
  lines += [f"| {k} | {v:.1f} | {v / total:.1%} |"
            for k, v in sorted(per_layer.items(), key=lambda kv: -kv[1])[:top]]
  return "\n".join(lines) + "\n"


HEADER = ("| size | batch | dtype | JAX ms/img | torch ms/img | torch/JAX | JAX compile s | GFLOP/img "
          "| JAX peak MiB | torch peak MiB | XLA temp+out MiB | load avg |")


def markdown(rows: list[Row]) -> str:
  lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
  for r in rows:
    lines.append(
        f"| {r.size}² | {r.batch} | {r.dtype} | {r.jax_ms_per_img:.0f} | {fmt(r.torch_ms_per_img)} "
        f"| {fmt(r.ratio, '.2f')} | {r.jax_compile_s:.1f} | {fmt(r.gflop_per_img)} | {fmt(r.jax_peak_mib)} "
        f"| {fmt(r.torch_peak_mib)} | {fmt(r.xla_temp_mib)} "
        f"| {fmt(r.load_before, '.1f')}→{fmt(r.load_after, '.1f')} |")
  if rows:
    r = rows[0]
    lines.append("")
    lines.append(f"Device: {r.device}; jax {jax.__version__}; conv formulation {r.formulation!r} "
                 f"(resolves to {resolve(r.formulation)!r}); peak memory: {r.jax_peak_kind}.")
  return "\n".join(lines)


def resolve(formulation: str) -> str:
  return conv.resolve_formulation(formulation)


def write_outputs(args, rows: list[Row], profiles: list[str], md_prefix: str) -> None:
  """Rewrites the CSV (rows of earlier runs kept) and the markdown file with this run's rows so far."""
  if args.csv:
    path = Path(args.csv)
    fields = [fl.name for fl in dataclasses.fields(Row)] + ["ratio"]
    with path.open("a", newline="") as f:
      w = csv.DictWriter(f, fieldnames=fields)
      if f.tell() == 0:
        w.writeheader()
      w.writerow({**dataclasses.asdict(rows[-1]), "ratio": rows[-1].ratio})
  if args.md:
    Path(args.md).write_text(md_prefix + markdown(rows) + "\n\n" + "\n".join(profiles))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 512, 1024])
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--dtype", type=lambda s: s.split(","), default=["float32"],
                 help="compute dtype(s): float32, bfloat16 or both (comma separated)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                 help="also time the PyTorch eager reference (CPU, float32 only)")
  p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                 help="on CPU, measure each call's peak RSS in a subprocess (one more call per size)")
  p.add_argument("--formulation", default="auto", choices=conv.FORMULATIONS)
  p.add_argument("--model", default="default", choices=tuple(model_lib.MODEL_CONFIGS))
  p.add_argument("--csv", help="append the rows to this CSV file")
  p.add_argument("--md", help="append the markdown table to this file")
  p.add_argument("--probe-timeout", type=float, default=900)
  p.add_argument("--profile", type=int, nargs="?", const=0, default=None, metavar="SIZE",
                 help="also trace one call and tabulate the op time per network and layer: of every "
                      "configuration, or of those at SIZE")
  p.add_argument("--_rss-probe", dest="rss_probe", choices=("jax", "torch"), help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  if args.rss_probe:
    rss_probe(args, args.rss_probe)
    return
  device = jax.devices()[0]
  print(f"portrait program, model {args.model!r}, {profiling.device_name(device)}, jax {jax.__version__}, "
        f"load average {fmt(load_average(), '.2f')}", flush=True)
  if args.torch and (device.platform != "cpu" or args.dtype != ["float32"]):
    print("  (PyTorch reference skipped: it runs on CPU in float32 only)")
  md_prefix = Path(args.md).read_text() if args.md and Path(args.md).exists() else ""
  rows, profiles = [], []
  itemsize = lambda d: np.dtype(d).itemsize if d != "bfloat16" else 2
  # Increasing memory, so a cumulative device peak counter is each configuration's own peak.
  for size, dtype in sorted(((s, d) for s in args.sizes for d in args.dtype),
                            key=lambda sd: (sd[0], itemsize(sd[1]))):
    try:
      row, profile_md = bench_size(args, size, dtype)
    except Exception as e:  # pylint: disable=broad-except  (e.g. out of memory: report, go on)
      print(f"  {size}² {dtype}: failed: {' '.join(str(e).split())[:300]}", flush=True)
      continue
    rows.append(row)
    profiles.append(profile_md)
    write_outputs(args, rows, profiles, md_prefix)
  print()
  print(markdown(rows))


if __name__ == "__main__":
  main()

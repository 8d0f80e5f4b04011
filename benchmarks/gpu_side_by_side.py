"""The JAX programs and their PyTorch peer, eager and under ``torch.compile``, timed side by side.

For each of the plain and the portrait program (``portrait.make_program``, random weights of a
``model.MODEL_CONFIGS`` model: ``experiments.scaling.random_params``), in one process:

1. JAX: compile (AOT), one warm-up call.
2. The same graph in PyTorch (``benchmarks/torch_portrait.py``, weights copied from the JAX params) in
   eager mode and under ``torch.compile``; every output of both is checked against JAX's (max |Δ|).
   On CUDA: ``--dtype`` (default bfloat16) convolutions and attention, ``channels_last``,
   ``scaled_dot_product_attention``; elsewhere the same switches are honoured (``--attention``,
   ``--channels-last``) and the default dtype is float32.
3. With a dtype other than float32, the JAX program's image is also compared with the float32 JAX
   program's on the first ``--f32-check-batch`` images: what the reduced precision changes.
4. ``--repeats`` rounds of one call of each (JAX, eager, compiled), so a change of load hits all alike;
   images/s from the median call. JAX and eager are first timed (and written) before ``torch.compile``
   starts, so a run cut short while it compiles still has them.

Writes one CSV row per program (the file is rewritten as rows complete, so a time-out keeps what
finished) and prints a markdown table. On CUDA, ``torch.backends.cudnn.benchmark`` is on (fixed shapes,
as a GPU user would run them). The prepared GPU run is ``benchmarks/gpu_side_by_side.sh`` (docs/scaling.md); on a CPU,
with the tiny model::

    nice -n 5 python -m benchmarks.gpu_side_by_side --model tiny --size 64 --batch 4 \\
        --attention sdpa --channels-last --out docs/runs/side_by_side_cpu_tiny.csv
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import statistics
import time
from pathlib import Path

# JAX would otherwise take 75% of the GPU's memory at start-up and leave PyTorch too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position  (after the setting above)
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import portrait_bench  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import scaling  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxstyle.nets import model as model_lib# pylint: disable=g-import-not-at-top,wrong-import-position
from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxstyle.program import profiling  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = Path(__file__).resolve().parents[1]

PROGRAMS = ("plain", "portrait")


@dataclasses.dataclass
class Row:
  program: str
  size: int
  batch: int
  dtype: str
  jax_img_per_s: float
  torch_eager_img_per_s: float
  torch_compile_img_per_s: float | None
  device: str
  max_abs_diff_eager: float            # max over every output of |JAX − torch eager|
  max_abs_diff_compile: float | None   # … of |JAX − torch.compile|
  max_abs_diff_vs_jax_f32: float | None  # |JAX image − float32 JAX image| (dtype ≠ float32)
  jax_compile_s: float
  torch_compile_s: float | None        # first call of the compiled module
  model: str
  attention: str
  channels_last: bool
  repeats: int
  jax_version: str
  torch_version: str
  load_avg: float | None
  note: str = ""

  @property
  def jax_vs_compile(self) -> float | None:
    """JAX img/s ÷ torch.compile img/s: ≥ 1 means JAX is at least as fast."""
    return None if not self.torch_compile_img_per_s else self.jax_img_per_s / self.torch_compile_img_per_s

  @property
  def jax_vs_eager(self) -> float:
    return self.jax_img_per_s / self.torch_eager_img_per_s


def default_out(platform: str, model: str) -> Path:
  name = "gpu_side_by_side.csv" if platform == "gpu" else f"side_by_side_{platform}_{model}.csv"
  return ROOT / "docs" / "runs" / name


def write_csv(path: Path, rows: list[Row]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fields = [f.name for f in dataclasses.fields(Row)]
  fields[fields.index("device"):fields.index("device")] = ["jax_vs_compile", "jax_vs_eager"]
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
      w.writerow({**dataclasses.asdict(r), "jax_vs_compile": r.jax_vs_compile, "jax_vs_eager": r.jax_vs_eager})


def markdown(rows: list[Row]) -> str:
  fmt = portrait_bench.fmt
  lines = ["| program | size | batch | dtype | JAX img/s | torch eager img/s | torch.compile img/s "
           "| JAX ÷ compile | max abs diff eager / compile | vs JAX f32 |", "|" + "---|" * 10]
  for r in rows:
    lines.append(f"| {r.program} | {r.size}² | {r.batch} | {r.dtype} | {r.jax_img_per_s:.1f} "
                 f"| {r.torch_eager_img_per_s:.1f} | {fmt(r.torch_compile_img_per_s, '.1f')} "
                 f"| {fmt(r.jax_vs_compile, '.2f')} | {r.max_abs_diff_eager:.1e} / "
                 f"{fmt(r.max_abs_diff_compile, '.1e')} | {fmt(r.max_abs_diff_vs_jax_f32, '.1e')} |")
  if rows:
    r = rows[0]
    lines += ["", f"Device: {r.device}; jax {r.jax_version}, torch {r.torch_version}; model {r.model!r}; "
                  f"torch attention {r.attention!r}, channels_last {r.channels_last}; median of {r.repeats} "
                  "interleaved calls each."]
  return "\n".join(lines)


class Torch:
  """The PyTorch side: device, dtype and the helpers that move arrays there and back."""

  def __init__(self, args, jax_platform: str):
    from benchmarks import torch_portrait as tp  # pylint: disable=g-import-not-at-top
    self.tp, self.torch = tp, tp.torch
    tp.configure_torch()
    cuda = jax_platform == "gpu" and self.torch.cuda.is_available()
    if jax_platform == "gpu" and not cuda:
      raise SystemExit("error: JAX runs on a GPU but this torch has no CUDA; install a CUDA build of torch")
    self.torch.backends.cudnn.benchmark = cuda
    self.device = self.torch.device("cuda" if cuda else "cpu")
    self.dtype = getattr(self.torch, args.dtype)
    self.channels_last = args.channels_last if args.channels_last is not None else cuda
    self.attention = args.attention or ("sdpa" if cuda else "bmm")

  def model(self, params, cfg, mode: str, controls: np.ndarray):
    m = self.tp.Portrait(jax.device_get(params), cfg, mode=mode, attention=self.attention,
                         identity=self.tp.needs_identity(controls, mode))
    m = m.to(self.device, self.dtype).eval()
    return m.to(memory_format=self.torch.channels_last) if self.channels_last else m

  def inputs(self, content, style, controls):
    fmt = self.torch.channels_last if self.channels_last else self.torch.contiguous_format
    images = [self.tp.to_nchw(x).to(self.device).contiguous(memory_format=fmt) for x in (content, style)]
    return (*images, self.torch.from_numpy(controls).to(self.device))

  def call(self, model, args):
    with self.torch.inference_mode():
      out = model(*args)
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()
    return out


def max_diff(jax_out: dict, torch_out: dict, tp) -> float:
  return max(tp.max_abs_errors(jax_out, torch_out).values())


def interleaved(calls: dict, repeats: int) -> dict[str, list[float]]:
  """Seconds of ``repeats`` rounds of one call of each of ``calls`` (name → function), in turn."""
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, fn in calls.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return times


def bench_program(args, mode: str, torch_side: Torch, params, device, progress=lambda row: None) -> Row:
  """The row of one program; ``progress(row)`` gets the JAX/eager row before torch.compile starts."""
  dtype = args.dtype
  cfg = dataclasses.replace(model_lib.MODEL_CONFIGS[args.model], dtype=dtype)
  mesh = sharding.data_mesh([device])
  content, style, controls = portrait_bench.inputs(args.size, args.batch)
  call_args = (params, jax.device_put(portrait.Batch(content, style), device), controls)
  t0 = time.perf_counter()
  compiled = portrait.make_program(cfg, mesh, mode=mode).lower(*call_args).compile()
  jax_compile_s = time.perf_counter() - t0
  run_jax = lambda: jax.block_until_ready(compiled(*call_args))
  jax_out = run_jax()
  print(f"  {mode}: JAX compiled in {jax_compile_s:.1f} s", flush=True)

  vs_f32 = None
  if dtype != "float32" and args.f32_check_batch > 0:
    k = min(args.f32_check_batch, args.batch)
    cfg32 = dataclasses.replace(cfg, dtype="float32")
    small = (params, portrait.Batch(jax.device_put(content[:k], device), jax.device_put(style[:k], device)),
             controls)
    ref = portrait.make_program(cfg32, mesh, mode=mode)(*small)
    vs_f32 = float(np.abs(np.asarray(ref["image"]) - np.asarray(jax_out["image"][:k])).max())
    print(f"  {mode}: max |Δ image| {dtype} vs float32 JAX program ({k} images): {vs_f32:.2e}", flush=True)

  torch_args = torch_side.inputs(content, style, controls)
  model = torch_side.model(params, dataclasses.replace(cfg, dtype="float32"), mode, controls)
  run_eager = lambda: torch_side.call(model, torch_args)
  diff_eager = max_diff(jax_out, run_eager(), torch_side.tp)
  print(f"  {mode}: torch eager max |Δ| vs JAX {diff_eager:.2e}", flush=True)
  img_per_s = lambda ts: args.batch / statistics.median(ts)
  times = interleaved({"jax": run_jax, "eager": run_eager}, args.repeats)
  row = Row(program=mode, size=args.size, batch=args.batch, dtype=dtype,
            jax_img_per_s=img_per_s(times["jax"]), torch_eager_img_per_s=img_per_s(times["eager"]),
            torch_compile_img_per_s=None, device=profiling.device_name(device),
            max_abs_diff_eager=diff_eager, max_abs_diff_compile=None, max_abs_diff_vs_jax_f32=vs_f32,
            jax_compile_s=jax_compile_s, torch_compile_s=None, model=args.model,
            attention=torch_side.attention, channels_last=torch_side.channels_last, repeats=args.repeats,
            jax_version=jax.__version__, torch_version=torch_side.torch.__version__,
            load_avg=portrait_bench.load_average(), note="torch.compile not run (--no-torch-compile)")
  print(f"  {mode}: JAX {row.jax_img_per_s:.2f} img/s, torch eager {row.torch_eager_img_per_s:.2f} img/s",
        flush=True)
  if not args.torch_compile:
    return row
  row.note = "torch.compile did not finish"
  progress(row)
  try:
    compiled_model = torch_side.torch.compile(model)
    t0 = time.perf_counter()
    out = torch_side.call(compiled_model, torch_args)
    torch_compile_s = time.perf_counter() - t0
    diff_compile = max_diff(jax_out, out, torch_side.tp)
  except Exception as e:  # pylint: disable=broad-except  (report it; the other columns still count)
    row.note = f"torch.compile failed: {' '.join(str(e).split())[:200]}"
    print(f"  {mode}: {row.note}", flush=True)
    return row
  print(f"  {mode}: torch.compile first call {torch_compile_s:.1f} s, max |Δ| vs JAX {diff_compile:.2e}",
        flush=True)
  # All three in the same rounds: these figures replace the first JAX/eager ones.
  times = interleaved({"jax": run_jax, "eager": run_eager,
                       "compile": lambda: torch_side.call(compiled_model, torch_args)}, args.repeats)
  row.jax_img_per_s, row.torch_eager_img_per_s, row.torch_compile_img_per_s = (
      img_per_s(times[k]) for k in ("jax", "eager", "compile"))
  row.max_abs_diff_compile, row.torch_compile_s, row.note = diff_compile, torch_compile_s, ""
  row.load_avg = portrait_bench.load_average()
  return row


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="default", choices=tuple(model_lib.MODEL_CONFIGS))
  p.add_argument("--programs", type=lambda s: s.split(","), default=list(PROGRAMS))
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--batch", type=int, default=None, help="default: 64 on a GPU, 1 elsewhere")
  p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                 help="compute dtype of both: default bfloat16 on a GPU, float32 elsewhere")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--attention", choices=("bmm", "sdpa"), default=None,
                 help="torch attention: default sdpa on CUDA, bmm (the published SANet code) elsewhere")
  p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                 help="torch memory format: default channels_last on CUDA")
  p.add_argument("--f32-check-batch", type=int, default=4,
                 help="images of the float32 JAX program to compare a reduced-precision run with (0: none)")
  p.add_argument("--out", help="CSV path (default docs/runs/gpu_side_by_side.csv on a GPU, "
                               "docs/runs/side_by_side_{platform}_{model}.csv elsewhere)")
  args = p.parse_args(argv)
  if unknown := set(args.programs) - set(PROGRAMS):
    p.error(f"unknown programs {sorted(unknown)}; expected some of {PROGRAMS}")
  return args


def main(argv=None) -> list[Row]:
  args = parse_args(argv)
  device = jax.devices()[0]
  gpu = device.platform == "gpu"
  args.batch = args.batch or (64 if gpu else 1)
  args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
  out = Path(args.out) if args.out else default_out(device.platform, args.model)
  torch_side = Torch(args, device.platform)
  print(f"side by side: {profiling.device_name(device)} (torch on {torch_side.device}), jax "
        f"{jax.__version__}, torch {torch_side.torch.__version__}, model {args.model!r}, {args.size}² "
        f"×{args.batch} {args.dtype}, load average {portrait_bench.fmt(portrait_bench.load_average(), '.2f')}",
        flush=True)
  params = jax.device_put(scaling.random_params(model_lib.MODEL_CONFIGS[args.model]), device)
  rows = []
  for mode in args.programs:
    try:
      rows.append(bench_program(args, mode, torch_side, params, device,
                                progress=lambda row: write_csv(out, rows + [row])))
    except Exception as e:  # pylint: disable=broad-except  (e.g. out of memory: report, go on)
      print(f"  {mode}: failed: {type(e).__name__}: {' '.join(str(e).split())[:400]}", flush=True)
      continue
    write_csv(out, rows)
  print()
  print(markdown(rows))
  print(f"\nwrote {out}")
  return rows


if __name__ == "__main__":
  main()

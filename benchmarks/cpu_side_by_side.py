"""The programs on the CPU in float32 and bf16 (oneDNN through ``jax.ffi``) beside PyTorch eager, in one run.

For each program (plain, portrait) and size, batch 1, random weights of a ``model.MODEL_CONFIGS`` model
(``experiments.scaling.random_params``), in one process:

1. JAX: the float32 program (XLA's convolutions) and the bfloat16 program (``formulation="auto"``, which
   is oneDNN on CPUs with bf16 units: ``jaxstyle/nets/onednn.py``), compiled ahead of time, one warm-up.
2. PyTorch eager (``benchmarks/torch_portrait.py``, the same weights): float32, and bfloat16 with
   ``channels_last`` (what runs PyTorch's convolutions on oneDNN's AMX kernels); SDPA attention in both.
   Beside them PyTorch's fastest CPU inference setup: the bf16 ``channels_last`` model under
   ``torch.compile`` (Inductor) with weight freezing (``torch._inductor.config.freezing``: weights become
   constants, prepacked for oneDNN once) under ``torch.no_grad`` (``--no-torch-compile``: skipped).
3. Outputs compared: max |Δ image| of JAX float32 vs PyTorch float32 (the same graph), and of bf16 vs
   float32 for each of JAX and PyTorch (what bf16 changes, on [0, 1] images).
4. ``--repeats`` rounds of one call of each of the five, in turn, so a change of load hits all alike;
   the median call (steady state). The first call of each is timed too: JAX's ahead-of-time compile
   plus its first call, eager's first call, and ``torch.compile``'s first call (tracing, Inductor's
   compile, freezing).

Rows go to ``--out`` (columns ``COLUMNS``: steady ``jax_ms``, ``torch_eager_ms``, ``torch_compile_ms``
(bf16 rows) and first calls ``jax_first_ms``, ``torch_eager_first_ms``, ``torch_compile_first_ms``; rows of other
sizes already in the file are kept, so sizes can run as separate quiet-machine runs) and a markdown table
with the differences and load to ``--md``. ``cpu`` is the model name with its bf16 flags, ``isa`` what
oneDNN dispatches to and, for bf16, the kernel it picks for a 3×3 convolution. Run on a quiet machine::

    python -m benchmarks.cpu_side_by_side --sizes 256,512 --repeats 5

``--real-pair CONTENT STYLE`` instead runs the shipped weights (``--weights``) on one real pair in both
dtypes and reports how far bf16 moves the picture (max and mean |Δ|, PSNR, SSIM), with a sheet.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import csv_table
from benchmarks import gpu_side_by_side as sbs
from benchmarks import portrait_bench
from experiments import scaling
from jaxstyle.nets import conv as conv_lib
from jaxstyle.nets import model as model_lib
from jaxstyle.nets import onednn
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("program", "size", "batch", "dtype", "jax_ms", "torch_eager_ms", "torch_compile_ms", "jax_first_ms",
           "torch_eager_first_ms", "torch_compile_first_ms", "cpu", "isa")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def bf16_flags(cpuinfo: str) -> str:
  """The bf16 flags in ``/proc/cpuinfo``'s text (``"avx512_bf16 amx_bf16 amx_tile amx_int8"``)."""
  flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
  return " ".join(f for f in BF16_FLAGS if f in flags) or "no bf16 flags"


def cpu_description() -> str:
  """``"CPU, 2 cores, Intel(R) Xeon(R) Processor, avx512_bf16 amx_bf16 amx_tile amx_int8"``."""
  try:
    cpuinfo = Path("/proc/cpuinfo").read_text()
  except OSError:
    cpuinfo = ""
  return f"{profiling.device_name(jax.devices('cpu')[0])}, {bf16_flags(cpuinfo)}"


def isa_description(dtype: str) -> str:
  """oneDNN's ISA, and for bf16 the formulation and 3×3 conv kernel the program uses."""
  formulation = conv_lib.resolve_formulation("auto", dtype)
  isa = onednn.cpu_isa() or f"no oneDNN: {onednn.unavailable()}"
  if formulation != "onednn":
    return f"{isa}; XLA convolutions ({formulation})"
  return f"{isa}; oneDNN {onednn.conv_implementation(dtype, 128, 128, 256, 256)}"


@dataclasses.dataclass
class Result:
  program: str
  size: int
  ms: dict[str, float]          # "jax f32", "jax bf16", "torch f32", "torch bf16", "torch compile bf16" → median ms
  first_ms: dict[str, float]    # the same → first call (JAX: compile + first call)
  diff_f32: float               # max |JAX f32 − torch f32|, every output
  diff_bf16_jax: float          # max |JAX bf16 image − JAX f32 image|
  diff_bf16_torch: float        # max |torch bf16 image − torch f32 image|
  load: tuple[float | None, float | None]
  diff_compile: float | None = None   # max |torch.compile bf16 image − torch eager bf16 image|


def torch_side(dtype: str) -> sbs.Torch:
  args = argparse.Namespace(dtype=dtype, channels_last=dtype == "bfloat16", attention="sdpa")
  return sbs.Torch(args, "cpu")


def image_diff(a: dict, b: dict) -> float:
  to_np = lambda x: (x.detach().float().numpy().transpose(0, 2, 3, 1) if hasattr(x, "detach")
                     else np.asarray(x, np.float32))
  return float(np.abs(to_np(a["image"]) - to_np(b["image"])).max())


def frozen_compile(t: sbs.Torch, model):
  """``model`` under ``torch.compile`` (Inductor) with weight freezing, called under ``no_grad``:
  PyTorch's recipe for CPU inference (freezing needs no autograd; ``inference_mode`` tensors cannot be
  frozen), so the calls go through ``call`` below, not ``Torch.call``."""
  import torch._inductor.config as inductor_config  # pylint: disable=g-import-not-at-top
  inductor_config.freezing = True
  compiled = t.torch.compile(model, backend="inductor")

  def call(args):
    with t.torch.no_grad():
      return compiled(*args)
  return call


def first_call(fn) -> tuple[object, float]:
  start = time.perf_counter()
  out = fn()
  return out, 1e3 * (time.perf_counter() - start)


def bench(args, mode: str, size: int, params, torches: dict[str, sbs.Torch]) -> Result:
  device = jax.devices()[0]
  mesh = sharding.data_mesh([device])
  content, style, controls = portrait_bench.inputs(size, 1)
  call_args = (params, jax.device_put(portrait.Batch(content, style), device), controls)
  load_before = portrait_bench.load_average()
  calls, outs, first = {}, {}, {}
  for dtype, short in (("float32", "f32"), ("bfloat16", "bf16")):
    cfg = dataclasses.replace(model_lib.MODEL_CONFIGS[args.model], dtype=dtype)
    start = time.perf_counter()
    compiled = portrait.make_program(cfg, mesh, mode=mode).lower(*call_args).compile()
    calls[f"jax {short}"] = lambda c=compiled: jax.block_until_ready(c(*call_args))
    outs[f"jax {short}"], _ = first_call(calls[f"jax {short}"])
    first[f"jax {short}"] = 1e3 * (time.perf_counter() - start)   # the compile and the first call
    t = torches[dtype]
    model = t.model(params, dataclasses.replace(cfg, dtype="float32"), mode, controls)
    torch_args = t.inputs(content, style, controls)
    calls[f"torch {short}"] = lambda t=t, m=model, a=torch_args: t.call(m, a)
    outs[f"torch {short}"], first[f"torch {short}"] = first_call(calls[f"torch {short}"])
    if dtype == "bfloat16" and args.torch_compile:
      frozen = frozen_compile(t, model)
      calls["torch compile bf16"] = lambda f=frozen, a=torch_args: f(a)
      outs["torch compile bf16"], first["torch compile bf16"] = first_call(calls["torch compile bf16"])
      print(f"  {mode} {size}²: torch.compile (frozen, bf16) first call {first['torch compile bf16'] / 1e3:.1f} s",
            flush=True)
  tp = torches["float32"].tp
  result = Result(mode, size, {}, first, sbs.max_diff(outs["jax f32"], outs["torch f32"], tp),
                  image_diff(outs["jax bf16"], outs["jax f32"]),
                  image_diff(outs["torch bf16"], outs["torch f32"]), (load_before, None))
  times = sbs.interleaved(calls, args.repeats)
  result.ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
  result.load = (load_before, portrait_bench.load_average())
  if "torch compile bf16" in outs:
    result.diff_compile = image_diff(outs["torch compile bf16"], outs["torch bf16"])
  print(f"  {mode} {size}²: " + ", ".join(f"{k} {v:.0f} ms" for k, v in result.ms.items()) +
        f"; max |Δ| JAX−torch f32 {result.diff_f32:.1e}, bf16−f32 JAX {result.diff_bf16_jax:.3f} "
        f"torch {result.diff_bf16_torch:.3f}", flush=True)
  return result


def csv_rows(results: list[Result]) -> list[dict]:
  cpu = cpu_description()
  rows = []
  ms = lambda d, k: "" if k not in d else round(d[k], 1)
  for r in results:
    for dtype, short in (("float32", "f32"), ("bfloat16", "bf16")):
      rows.append({"program": r.program, "size": r.size, "batch": 1, "dtype": dtype,
                   "jax_ms": ms(r.ms, f"jax {short}"), "torch_eager_ms": ms(r.ms, f"torch {short}"),
                   "torch_compile_ms": ms(r.ms, f"torch compile {short}"), "jax_first_ms": ms(r.first_ms, f"jax {short}"),
                   "torch_eager_first_ms": ms(r.first_ms, f"torch {short}"),
                   "torch_compile_first_ms": ms(r.first_ms, f"torch compile {short}"),
                   "cpu": cpu, "isa": isa_description(dtype)})
  return rows


def write_csv(path: Path, rows: list[dict]) -> None:
  """``rows`` replace the file's rows of the same (program, size, batch, dtype); others are kept."""
  csv_table.merge_rows(path, rows, lambda r: (r["program"], int(r["size"]), int(r["batch"]), r["dtype"]), COLUMNS,
                       order=lambda k: (k[0] != "plain", k[1], k[2], k[3] != "float32"))


def markdown(results: list[Result]) -> str:
  lines = ["| program | size | JAX f32 ms | JAX bf16 ms | torch f32 ms | torch bf16 ms | torch.compile bf16 ms "
           "| torch bf16 ÷ JAX bf16 | compile ÷ JAX bf16 | first call: JAX bf16 / eager / compile s "
           "| max \\|Δ\\| JAX−torch f32 | bf16 vs f32: JAX / torch | load |", "|" + "---|" * 13]
  fmt = portrait_bench.fmt
  for r in results:
    m, f = r.ms, r.first_ms
    compiled = m.get("torch compile bf16")
    lines.append(f"| {r.program} | {r.size}² | {m['jax f32']:.0f} | {m['jax bf16']:.0f} | {m['torch f32']:.0f} "
                 f"| {m['torch bf16']:.0f} | {fmt(compiled)} | {m['torch bf16'] / m['jax bf16']:.2f}× "
                 f"| {fmt(compiled and compiled / m['jax bf16'], '.2f')}× "
                 f"| {f['jax bf16'] / 1e3:.1f} / {f['torch bf16'] / 1e3:.1f} / "
                 f"{fmt(f.get('torch compile bf16') and f['torch compile bf16'] / 1e3, '.1f')} | {r.diff_f32:.1e} "
                 f"| {r.diff_bf16_jax:.3f} / {r.diff_bf16_torch:.3f} "
                 f"| {portrait_bench.fmt(r.load[0], '.1f')}→{portrait_bench.fmt(r.load[1], '.1f')} |")
  return "\n".join(lines)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
  """Mean SSIM (Wang et al. 2004) of two luminance images in [0, 1] over ``window``² box windows."""
  def box(x):
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), 0), 1)
    return (c[window:, window:] - c[:-window, window:] - c[window:, :-window] + c[:-window, :-window]) / window**2
  c1, c2 = 0.01**2, 0.03**2
  ma, mb = box(a), box(b)
  va, vb, cov = box(a * a) - ma**2, box(b * b) - mb**2, box(a * b) - ma * mb
  return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))))


def real_pair(args) -> str:
  """bf16 against float32 with the shipped weights on one real pair; a sheet f32 | bf16 | 10·|Δ|."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jaxstyle.checkpoints import loading  # pylint: disable=g-import-not-at-top
  from jaxstyle.io import image_io  # pylint: disable=g-import-not-at-top
  params, cfg = loading.load(args.weights)
  content = image_io.load_image(args.real_pair[0], args.size_real)[None]
  style = image_io.load_image(args.real_pair[1], args.size_real)[None]
  mesh = sharding.data_mesh(jax.devices()[:1])
  controls = portrait.Controls().as_array()
  batch = portrait.Batch(content, style)
  images = {dtype: np.asarray(portrait.make_program(dataclasses.replace(cfg, dtype=dtype), mesh)(
      params, batch, controls)["image"][0], np.float32) for dtype in ("float32", "bfloat16")}
  a, b = images["float32"], images["bfloat16"]
  luma = lambda x: x @ np.asarray([0.299, 0.587, 0.114], np.float32)
  delta = np.abs(a - b)
  psnr = 10 * np.log10(1 / np.mean((a - b) ** 2))
  line = (f"real pair {Path(args.real_pair[0]).name} × {Path(args.real_pair[1]).name}, portrait program at "
          f"{content.shape[2]}×{content.shape[1]}, weights {args.weights}: bf16 ({isa_description('bfloat16')}) vs "
          f"float32: max |Δ| {delta.max():.3f}, mean |Δ| {delta.mean():.4f}, PSNR {psnr:.1f} dB, "
          f"SSIM (luminance, 7×7) {ssim(luma(a), luma(b)):.4f}")
  if args.sheet:
    sheet = np.concatenate([a, b, np.clip(10 * delta, 0, 1)], axis=1)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((sheet * 255 + 0.5).astype(np.uint8)).save(args.sheet, quality=90)
  return line


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="default", choices=tuple(model_lib.MODEL_CONFIGS))
  p.add_argument("--programs", type=lambda s: s.split(","), default=["plain", "portrait"])
  p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 512, 1024])
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=True,
                 help="also time the bf16 model under torch.compile (Inductor, frozen weights)")
  p.add_argument("--out", default=str(ROOT / "docs" / "runs" / "cpu_side_by_side.csv"))
  p.add_argument("--md", help="append the markdown table (and the real-pair line) to this file")
  p.add_argument("--real-pair", nargs=2, metavar=("CONTENT", "STYLE"))
  p.add_argument("--weights", default=str(ROOT / "weights"))
  p.add_argument("--size-real", type=int, default=512)
  p.add_argument("--sheet", help="with --real-pair: write the f32 | bf16 | 10·|Δ| sheet here")
  return p.parse_args(argv)


def main(argv=None) -> list[Result]:
  args = parse_args(argv)
  header = (f"{datetime.date.today()}, {cpu_description()}, oneDNN ISA {onednn.cpu_isa()}, jax {jax.__version__}, "
            f"load average {portrait_bench.fmt(portrait_bench.load_average(), '.2f')}")
  print(header, flush=True)
  if args.real_pair:
    line = real_pair(args)
    print(line)
    if args.md:
      with open(args.md, "a") as f:
        f.write(f"\n{header}\n\n{line}\n")
    return []
  torches = {dtype: torch_side(dtype) for dtype in ("float32", "bfloat16")}
  params = scaling.random_params(model_lib.MODEL_CONFIGS[args.model])
  results = []
  for size in args.sizes:
    for mode in args.programs:
      t0 = time.perf_counter()
      results.append(bench(args, mode, size, params, torches))
      write_csv(Path(args.out), csv_rows(results))
      print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
  table = markdown(results)
  print(f"\n{table}\n\nwrote {args.out}")
  if args.md:
    with open(args.md, "a") as f:
      f.write(f"\n{header}; torch {torches['float32'].torch.__version__}, median of {args.repeats} "
              f"interleaved calls\n\n{table}\n")
  return results


if __name__ == "__main__":
  main()

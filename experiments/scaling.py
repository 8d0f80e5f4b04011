r"""Scaling sweep of the portrait program (``--what infer``) or the SANet train step (``--what train``).

Sweeps the number of devices used (sub-meshes of ``jax.devices()[:n]``: 1, 2, 4, … and all), strong
scaling (``--batches`` is the global batch) and/or weak scaling (``--batches`` is the per-device batch),
resolutions and dtypes. Per configuration: compile time, median step time over ``--repeats`` steps after
one warm-up, images/s, peak memory, XLA's memory analysis of the compiled program, FLOPs per image
(XLA cost analysis of the lowered program, ``profiling.counted_flops``) and the achieved fraction of the
device's peak FLOP/s (``PEAK_TFLOPS``). Writes ``scaling_{what}.csv``, ``.md`` and ``.png`` (img/s vs devices,
ms/img vs resolution, memory vs resolution) under ``--out``; an out-of-memory configuration is a row
with status ``oom``. ``--max-seconds`` ends the sweep cleanly, keeping what was measured.

    python -m experiments.scaling --what infer --resolutions 256,512,1024,2048 --dtypes bfloat16 \
        --megapixels-per-device 16 --out /tmp/scaling
    python -m experiments.scaling --what train --resolutions 256 --batches 8,32 --dtypes bfloat16
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m experiments.scaling --what infer \
        --model tiny --resolutions 64 --batches 4 --out /tmp/scaling        # CPU: mechanics only

``--compile-only`` records FLOPs and the compiled memory analysis without running (e.g. 2048² on CPU).

Multi-host: start the same command on every host with ``--coordinator-address host:port
--num-processes P --process-id i`` (or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``). Device counts are then multiples of P, each process contributing the same number
of its local devices; process 0 decides when the time budget is spent, prints and writes the files.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding

MIB = 2**20

# Dense peak TFLOP/s per device by compute dtype. "float32" on NVIDIA GPUs is the TF32 tensor-core peak
# (XLA's default precision for float32 convolutions and matmuls there); the non-tensor FP32 peak is in
# the note. Sources: NVIDIA H100 datasheet (SXM5: BF16 989.4, TF32 494.7, FP32 66.9; PCIe: 756 / 378 /
# 51.2), NVIDIA H200 datasheet (same compute as H100 SXM), NVIDIA A100 datasheet (BF16 312, TF32 156,
# FP32 19.5), Google Cloud TPU system architecture pages (bf16: v4 275, v5e 197, v5p 459, v6e 918).
PEAK_TFLOPS = (
    # (substring of device_kind, {dtype: TFLOP/s}, note)
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}, "H100 PCIe datasheet; FP32 non-tensor 51.2"),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}, "H100 SXM datasheet; FP32 non-tensor 66.9"),
    ("H200", {"bfloat16": 989.4, "float32": 494.7}, "H200 datasheet; FP32 non-tensor 66.9"),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}, "A100 datasheet; FP32 non-tensor 19.5"),
    ("TPU v4", {"bfloat16": 275.0}, "Cloud TPU v4 docs"),
    ("TPU v5 lite", {"bfloat16": 197.0}, "Cloud TPU v5e docs"),
    ("TPU v5e", {"bfloat16": 197.0}, "Cloud TPU v5e docs"),
    ("TPU v5p", {"bfloat16": 459.0}, "Cloud TPU v5p docs"),
    ("TPU v5", {"bfloat16": 459.0}, "Cloud TPU v5p docs"),
    ("TPU v6 lite", {"bfloat16": 918.0}, "Cloud TPU v6e docs"),
)

FIELDS = ("what", "scaling", "devices", "global_batch", "per_device_batch", "resolution", "dtype", "status",
          "compile_s", "ms_per_step", "ms_per_img", "img_per_s", "peak_mem_mib", "xla_temp_mib",
          "xla_args_mib", "gflop_per_img", "achieved_tflops", "peak_tflops", "frac_of_peak", "device_kind",
          "platform", "model", "steps_timed", "load_avg", "note")
SIMULATED_NOTE = ("simulated CPU devices (--xla_force_host_platform_device_count) share the same cores: "
                  "these numbers test the mechanics of the sweep, not scaling")


@dataclasses.dataclass(frozen=True)
class Config:
  what: str
  scaling: str           # "strong" | "weak" | "base" (one device: both series start there)
  devices: int
  global_batch: int
  resolution: int
  dtype: str

  @property
  def per_device_batch(self) -> int:
    return self.global_batch // self.devices


# ------------------------------------------------------------------------------------------ devices


def device_counts(n_total: int, requested: list[int] | None, processes: int = 1) -> list[int]:
  """1, 2, 4, … up to ``n_total``, and ``n_total`` itself; or the requested counts that exist.

  With several processes every count is a multiple of ``processes`` (each contributes equally):
  P, 2P, 4P, … up to ``n_total``.
  """
  if requested:
    return sorted({n for n in requested if 1 <= n <= n_total and n % processes == 0})
  counts, n = [], processes
  while n < n_total:
    counts.append(n)
    n *= 2
  return counts + [n_total]


def sub_devices(devices, n: int) -> list:
  """The first ``n`` devices, ``n / process_count`` from each process (all of one process for P = 1)."""
  processes = sorted({d.process_index for d in devices})
  per = n // len(processes)
  return [d for p in processes for d in [d for d in devices if d.process_index == p][:per]]


def local(devices) -> list:
  return [d for d in devices if d.process_index == jax.process_index()]


def simulated_cpu(devices) -> bool:
  """Several CPU devices in one process (``--xla_force_host_platform_device_count``)."""
  return devices[0].platform == "cpu" and len(local(devices)) > 1


def agreed(flag: bool) -> bool:
  """Process 0's ``flag`` on every process, so that all of them take the same branch (time budget)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def put(x: np.ndarray, sharding) -> jax.Array:
  """The same host array on every process → a global array with ``sharding`` (multi-host safe)."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def peak_tflops(device, dtype: str) -> tuple[float | None, str]:
  """(per-device dense peak TFLOP/s for ``dtype``, source note); (None, reason) where unknown."""
  if device.platform == "cpu":
    return None, "CPU: no peak figure (n/a)"
  kind = device.device_kind
  for key, peaks, note in PEAK_TFLOPS:
    if key.lower() in kind.lower():
      return peaks.get(dtype), note
  return None, f"no peak figure for {kind!r}"


def is_oom(e: BaseException) -> bool:
  text = f"{type(e).__name__} {e}".lower()
  return any(s in text for s in ("resource_exhausted", "out of memory", "oom", "resource exhausted",
                                 "failed to allocate", "memoryerror"))


# ------------------------------------------------------------------------------------------ programs


@functools.lru_cache(maxsize=4)
def random_params(model_cfg: model_lib.ModelConfig, seed: int = 0) -> dict:
  """Host float32 params of ``model_cfg`` (``model.init_params``): the same on every process, so each
  can place its shards of them (``put``)."""
  return jax.device_get(model_lib.init_params(model_cfg, jax.random.key(seed)))


@dataclasses.dataclass
class Prepared:
  step: Callable[[], Any]          # runs one step and blocks
  compile_s: float
  flops: float | None
  temp_mib: float | None
  args_mib: float | None


def prepare_infer(model_cfg: model_lib.ModelConfig, mesh, cfg: Config, compile_only: bool) -> Prepared:
  """The portrait program on ``mesh`` with a batch of random images, compiled (AOT)."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  program = portrait.make_program(model_cfg, mesh)
  shape = (cfg.global_batch, cfg.resolution, cfg.resolution, 3)
  if compile_only:
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          random_params(model_cfg))
    image = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch)
    controls = jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=replicated)
    args = (params, portrait.Batch(image, image), controls)
  else:
    params = jax.tree.map(lambda x: put(x, replicated), random_params(model_cfg))
    rng = np.random.default_rng(0)
    images = [put(rng.uniform(size=shape).astype(np.float32), batch) for _ in range(2)]
    args = (params, portrait.Batch(*images), put(portrait.Controls().as_array(), replicated))
  t0 = time.perf_counter()
  compiled = program.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  temp, arg_mib = profiling.compiled_memory_mib(compiled)
  step = None if compile_only else (lambda: jax.block_until_ready(compiled(*args)))
  flops = profiling.counted_flops(model_cfg, lambda c: portrait.make_program(c, mesh).lower(*args))
  return Prepared(step, compile_s, flops, temp, arg_mib)


def prepare_train(model_cfg: model_lib.ModelConfig, mesh, cfg: Config, compile_only: bool) -> Prepared:
  """One SANet train step (``jaxstyle.training.sanet_training.train_step``) on random placed batches."""
  try:
    from jaxstyle.training import sanet_training  # pylint: disable=g-import-not-at-top
    from jaxstyle.training import loop  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise RuntimeError(f"--what train needs jaxstyle.training.sanet_training and its imports: {e}") from e
  from train.configs import sanet as sanet_configs  # pylint: disable=g-import-not-at-top
  config = sanet_configs.get_config(f"default,encoder=random,batch_size={cfg.global_batch},crop={cfg.resolution}")
  hp = dataclasses.replace(sanet_training.hparams_from_config(config), model=model_cfg)
  params = random_params(model_cfg)
  # The step's state from the sweep's params (no second init); the Adam state is optax's own init.
  trainable = {k: params[k] for k in sanet_training.TRAINED}
  state = loop.TrainState(step=np.zeros((), np.int32), params=trainable,
                              opt_state=sanet_training.make_optimizer(hp).init(trainable),
                              rng=np.asarray(jax.random.PRNGKey(0)))
  with jax.set_mesh(mesh):
    frozen = sharding.place_replicated(mesh, {"encoder": params["encoder"]})
    state = sharding.place_replicated(mesh, state)
    if compile_only:
      state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    rng = np.random.default_rng(0)
    shape = (cfg.global_batch, cfg.resolution, cfg.resolution, 3)
    data = {k: put(rng.uniform(size=shape).astype(np.float32), sharding.batch_sharding(mesh))
            for k in ("content", "style")}
    t0 = time.perf_counter()
    compiled = sanet_training.train_step.lower(state, frozen, data, hp=hp).compile()
    compile_s = time.perf_counter() - t0
    flops = profiling.counted_flops(model_cfg, lambda c: sanet_training.train_step.lower(
        state, frozen, data, hp=dataclasses.replace(hp, model=c)))
  temp, arg_mib = profiling.compiled_memory_mib(compiled)
  holder = {"state": state}

  def step():
    with jax.set_mesh(mesh):
      holder["state"], metrics = compiled(holder["state"], frozen, data)
    jax.block_until_ready(metrics)

  return Prepared(None if compile_only else step, compile_s, flops, temp, arg_mib)


PREPARE = {"infer": prepare_infer, "train": prepare_train}


# --------------------------------------------------------------------------------------------- sweep


def configs(args, n_devices: int, processes: int = 1) -> list[Config]:
  """Every configuration, ordered by dtype, then pixels per device: memory grows about monotonically."""
  counts = device_counts(n_devices, args.devices, processes)
  out = []
  for dtype in args.dtypes:
    for res, batches in resolution_batches(args):
      for b in batches:
        for n in counts:
          if n == 1:             # the common baseline of strong and weak scaling
            out.append(Config(args.what, "base", n, b, res, dtype))
            continue
          if "weak" in args.scaling:
            out.append(Config(args.what, "weak", n, b * n, res, dtype))
          if "strong" in args.scaling and not args.megapixels_per_device and b % n == 0:
            out.append(Config(args.what, "strong", n, b, res, dtype))
  key = lambda c: (args.dtypes.index(c.dtype), c.per_device_batch * c.resolution**2, c.resolution,
                   c.scaling, c.devices)
  return sorted(dict.fromkeys(out), key=key)


def resolution_batches(args) -> list[tuple[int, list[int]]]:
  """[(resolution, batches)] from ``--res-batches``, ``--megapixels-per-device`` or the product."""
  if args.res_batches:
    pairs = []
    for item in args.res_batches.split(";"):
      res, _, batches = item.partition(":")
      pairs.append((int(res), [int(b) for b in batches.split(",")]))
    return pairs
  if args.megapixels_per_device:
    return [(r, [max(1, round(args.megapixels_per_device * MIB / r**2))]) for r in args.resolutions]
  return [(r, list(args.batches)) for r in args.resolutions]


def measure(args, cfg: Config, devices, deadline: float) -> dict[str, Any]:
  """One configuration → one CSV row (``status``: ok | partial (fewer steps: time budget) | oom | error
  | compiled (``--compile-only``))."""
  used = sub_devices(devices, cfg.devices)
  mesh = sharding.data_mesh(used)
  model_cfg = dataclasses.replace(model_lib.MODEL_CONFIGS[args.model], dtype=cfg.dtype,
                                  formulation=args.formulation)
  peak, peak_note = peak_tflops(used[0], cfg.dtype)
  row = {**{k: None for k in FIELDS}, "what": cfg.what, "scaling": cfg.scaling, "devices": cfg.devices,
         "global_batch": cfg.global_batch, "per_device_batch": cfg.per_device_batch,
         "resolution": cfg.resolution, "dtype": cfg.dtype, "device_kind": profiling.device_name(used[0]),
         "platform": used[0].platform, "model": args.model,
         "peak_tflops": peak, "note": peak_note if peak is None else ""}
  if simulated_cpu(used):
    row["note"] = "simulated devices share the CPU cores"
  prepared = None
  try:
    prepared = PREPARE[cfg.what](model_cfg, mesh, cfg, args.compile_only)
    row.update(compile_s=round(prepared.compile_s, 2), xla_temp_mib=_round(prepared.temp_mib),
               xla_args_mib=_round(prepared.args_mib))
    if prepared.flops:
      row["gflop_per_img"] = float(f"{prepared.flops / cfg.global_batch / 1e9:.4g}")
    if args.compile_only:
      row["status"] = "compiled"
      return row
    prepared.step()                                          # warm-up
    times = []
    for _ in range(args.repeats):
      if times and agreed(time.perf_counter() + statistics.median(times) > deadline):
        break
      t0 = time.perf_counter()
      prepared.step()
      times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    row.update(status="ok" if len(times) == args.repeats else "partial", steps_timed=len(times),
               ms_per_step=round(step_s * 1e3, 2), ms_per_img=round(step_s * 1e3 / cfg.global_batch, 3),
               img_per_s=round(cfg.global_batch / step_s, 2), peak_mem_mib=_round(_peak_mib(used)))
    if row["gflop_per_img"]:
      achieved = row["gflop_per_img"] * row["img_per_s"] / 1e3
      row["achieved_tflops"] = float(f"{achieved:.4g}")
      if peak:
        row["frac_of_peak"] = round(achieved / (peak * cfg.devices), 4)
  except Exception as e:  # pylint: disable=broad-except  (an OOM or a failed config is a row, not a crash)
    row["status"] = "oom" if is_oom(e) else "error"
    row["note"] = " ".join(f"{type(e).__name__}: {e}".split())[:300]
  finally:
    del prepared
    gc.collect()
  if used[0].platform == "cpu" and hasattr(os, "getloadavg"):
    row["load_avg"] = round(os.getloadavg()[0], 2)     # other processes share a CPU's cores
  return row


def _peak_mib(devices) -> float | None:
  peak, _ = profiling.peak_memory(devices)
  return None if peak is None else peak / MIB


def _round(x, nd=1):
  return None if x is None else round(x, nd)


def fmt_row(r: dict) -> str:
  g = lambda k, spec="": "n/a" if r.get(k) in (None, "") else format(r[k], spec)
  return (f"{r['what']} {r['scaling']:6s} dev={r['devices']} batch={r['global_batch']} {r['resolution']}² "
          f"{r['dtype']:8s} {r['status']:8s} compile {g('compile_s', '.1f')} s, {g('ms_per_step', '.1f')} ms/step, "
          f"{g('img_per_s', '.1f')} img/s, {g('gflop_per_img', '.4g')} GFLOP/img, "
          f"{g('achieved_tflops', '.3g')} TFLOP/s ({g('frac_of_peak', '.1%')} of peak), peak mem "
          f"{g('peak_mem_mib', '.0f')} MiB, XLA temp {g('xla_temp_mib', '.0f')} MiB"
          + (f"  [{r['note']}]" if r.get("note") and r["status"] in ("oom", "error") else ""))


# -------------------------------------------------------------------------------------------- output


def read_csv(path: Path) -> list[dict]:
  if not path.exists():
    return []
  with path.open() as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for k, v in r.items():
      if v in ("", "None"):
        r[k] = None
      elif k not in ("what", "scaling", "dtype", "status", "device_kind", "platform", "model", "note"):
        # numbers: ints unless they have a point or an exponent
        r[k] = float(v) if any(c in v for c in ".e") else int(v)
  return rows


def write_csv(path: Path, rows: list[dict]) -> None:
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    for r in rows:
      w.writerow({k: r.get(k) for k in FIELDS})


def markdown(rows: list[dict], title: str, notes: list[str]) -> str:
  cols = (("scaling", "scaling", ""), ("devices", "devices", ""), ("global_batch", "batch", ""),
          ("resolution", "res", ""), ("dtype", "dtype", ""), ("status", "status", ""),
          ("img_per_s", "img/s", ".1f"), ("ms_per_step", "ms/step", ".1f"), ("ms_per_img", "ms/img", ".2f"),
          ("compile_s", "compile s", ".1f"), ("peak_mem_mib", "peak MiB", ".0f"),
          ("xla_temp_mib", "XLA temp MiB", ".0f"), ("gflop_per_img", "GFLOP/img", ".1f"),
          ("achieved_tflops", "TFLOP/s", ".2f"), ("frac_of_peak", "of peak", ".1%"))
  if any(r.get("load_avg") is not None for r in rows):
    cols += (("load_avg", "load avg", ".1f"),)
  lines = [f"## {title}", ""] + [f"- {n}" for n in notes] + [""]
  lines.append("| " + " | ".join(c[1] for c in cols) + " |")
  lines.append("|" + "---|" * len(cols))
  for r in rows:
    cells = []
    for key, _, spec in cols:
      v = r.get(key)
      cells.append("n/a" if v is None else (f"{v}²" if key == "resolution" else format(v, spec)))
    lines.append("| " + " | ".join(cells) + " |")
  errors = [r for r in rows if r["status"] in ("error", "oom") and r.get("note")]
  if errors:
    lines += ["", "Failed configurations:"] + [
        f"- {r['devices']} dev, batch {r['global_batch']}, {r['resolution']}², {r['dtype']}: "
        f"{r['status']}: {r['note']}" for r in errors]
  return "\n".join(lines) + "\n"


def _throughput_panel(ax, ok: list[dict]) -> None:
  series: dict[tuple, list] = {}
  for r in ok:
    for scaling in (("strong", "weak") if r["scaling"] == "base" else (r["scaling"],)):
      b = r["global_batch"] if scaling == "strong" else r["per_device_batch"]
      series.setdefault((scaling, r["resolution"], r["dtype"], b), []).append(r)
  swept = len({r["devices"] for r in ok}) > 1
  for (scaling, res, dtype, b), rs in sorted(series.items()):
    if swept and len(rs) < 2:
      continue                 # a lone baseline point of a series that was not swept
    rs = sorted(rs, key=lambda r: r["devices"])
    label = f"{scaling} {res}² {dtype} " + (f"global {b}" if scaling == "strong" else f"{b}/dev")
    ax.plot([r["devices"] for r in rs], [r["img_per_s"] for r in rs], "o-", label=label)
  ax.set(xlabel="devices", ylabel="images / s", title="throughput vs devices")


def _time_panel(ax, ok: list[dict]) -> None:
  series: dict[tuple, list] = {}
  for r in ok:
    series.setdefault((r["dtype"], r["devices"], r["scaling"]), []).append(r)
  for (dtype, n, scaling), rs in sorted(series.items()):
    best = {}
    for r in rs:           # fastest batch per resolution
      if r["resolution"] not in best or r["ms_per_img"] < best[r["resolution"]]["ms_per_img"]:
        best[r["resolution"]] = r
    rs = [best[k] for k in sorted(best)]
    label = f"{dtype}, {n} dev" + ("" if scaling == "base" else f" ({scaling})")
    ax.plot([r["resolution"] for r in rs], [r["ms_per_img"] for r in rs], "o-", label=label)
  ax.set(xlabel="resolution (px side)", ylabel="ms / image (best batch)", title="time vs resolution")


def _memory_panel(ax, mem: list[dict]) -> None:
  series: dict[tuple, list] = {}
  for r in mem:
    series.setdefault((r["dtype"], r["devices"], r["per_device_batch"]), []).append(r)
  for (dtype, n, b), rs in sorted(series.items()):
    rs = sorted({r["resolution"]: r for r in rs}.values(), key=lambda r: r["resolution"])
    what = f"{dtype}, {n} dev × {b}"
    if any(r.get("xla_temp_mib") for r in rs):
      ax.plot([r["resolution"] for r in rs], [r.get("xla_temp_mib") or np.nan for r in rs], "o-",
              label=f"XLA temp, {what}")
    if any(r.get("peak_mem_mib") for r in rs):
      ax.plot([r["resolution"] for r in rs], [r.get("peak_mem_mib") or np.nan for r in rs], "s--",
              label=f"device peak, {what}")
  ax.set(xlabel="resolution (px side)", ylabel="MiB per device", title="memory vs resolution")


def plot(rows: list[dict], path: Path, title: str) -> bool:
  """img/s vs devices, ms/img vs resolution, memory vs resolution: one PNG, the panels that have data."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    from matplotlib.ticker import ScalarFormatter  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("matplotlib not installed: no plot")
    return False
  ok = [r for r in rows if r["status"] in ("ok", "partial")]
  mem = [r for r in rows if r.get("xla_temp_mib") is not None or r.get("peak_mem_mib") is not None]
  panels = [(p, data, key) for p, data, key in ((_throughput_panel, ok, "devices"),
                                                (_time_panel, ok, "resolution"),
                                                (_memory_panel, mem, "resolution")) if data]
  if not panels:
    return False
  fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.6), squeeze=False)
  for ax, (panel, data, key) in zip(axes[0], panels):
    panel(ax, data)
    ax.set_xscale("log", base=2)
    ticks = sorted({r[key] for r in data})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ys = [y for line in ax.get_lines() for y in line.get_ydata() if np.isfinite(y) and y > 0]
    if panel is not _throughput_panel and ys and max(ys) / min(ys) > 20:
      ax.set_yscale("log")
      ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def write_outputs(args, rows: list[dict], devices) -> None:
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"scaling_{args.what}"
  write_csv(stem.with_suffix(".csv"), rows)
  kind = profiling.device_name(devices[0])
  what = "portrait program (inference)" if args.what == "infer" else "SANet train step"
  title = f"{what}, model {args.model!r}, {kind}" + (", simulated devices" if simulated_cpu(devices) else "")
  notes = [f"device: {kind}; {len(devices)} device(s) in {jax.process_count()} process(es); "
           f"jax {jax.__version__}",
           "img/s: global batch / median step time; ms/img: step time / global batch",
           "peak MiB (`jaxstyle.program.profiling.peak_memory`): `memory_stats()['peak_bytes_in_use']` (max over the "
           "devices used, cumulative over the run, configs in increasing size), or where the backend has "
           "none (CPU) the process's peak resident set (VmHWM); XLA temp MiB: "
           "`compiled.memory_analysis()` temp + output buffers per device",
           "GFLOP/img: XLA cost analysis of the lowered program (attention counted unchunked: "
           "`profiling.counted_flops`) / global batch; TFLOP/s: GFLOP/img × img/s; "
           "of peak: against `PEAK_TFLOPS` × devices (float32 on NVIDIA = TF32 peak)"]
  if simulated_cpu(devices):
    notes.insert(0, f"**{SIMULATED_NOTE}**")
  elif devices[0].platform == "cpu" and jax.process_count() > 1:
    notes.insert(0, "**CPU processes started on one machine share its cores: these numbers test the "
                    "multi-process mechanics, not scaling**")
  peak, source = peak_tflops(devices[0], args.dtypes[0])
  notes.append(f"peak figure source: {source}")
  stem.with_suffix(".md").write_text(markdown(rows, title, notes))
  plot(rows, stem.with_suffix(".png"), title)


def parse_args(argv=None):
  ints = lambda s: [int(x) for x in s.split(",") if x]
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--what", choices=("infer", "train"), default="infer")
  p.add_argument("--devices", type=ints, help="device counts (default 1, 2, 4, … all)")
  p.add_argument("--scaling", default="strong,weak", help="strong, weak or both (comma separated)")
  p.add_argument("--batches", type=ints, default=[4],
                 help="strong scaling: global batches; weak scaling: per-device batches")
  p.add_argument("--megapixels-per-device", type=float,
                 help="instead of --batches: per-device batch = this many megapixels per step (weak)")
  p.add_argument("--res-batches", help='explicit "res:b,b;res:b" pairs, e.g. "512:16,32,64;2048:4" '
                 "(overrides --resolutions, --batches, --megapixels-per-device)")
  p.add_argument("--resolutions", type=ints, default=[256, 512, 1024, 2048])
  p.add_argument("--dtypes", type=lambda s: s.split(","), default=["float32", "bfloat16"])
  p.add_argument("--model", default="default", choices=tuple(model_lib.MODEL_CONFIGS))
  p.add_argument("--formulation", default="auto")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--max-seconds", type=float, default=float("inf"),
                 help="stop starting configurations after this long and write what was measured")
  p.add_argument("--compile-only", action="store_true", help="FLOPs and memory analysis only")
  p.add_argument("--append", action="store_true", help="keep the rows already in --out's CSV")
  p.add_argument("--out", default="out/scaling")
  p.add_argument("--coordinator-address", help="host:port of process 0 (multi-host)")
  p.add_argument("--num-processes", type=int, help="number of processes (multi-host)")
  p.add_argument("--process-id", type=int, help="this process's index (multi-host)")
  return p.parse_args(argv)


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  sharding.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  lead = jax.process_index() == 0
  say = (lambda *a: print(*a, flush=True)) if lead else (lambda *a: None)
  t_start = time.perf_counter()
  deadline = t_start + args.max_seconds
  devices = jax.devices()
  if simulated_cpu(devices):
    say(f"NOTE: {SIMULATED_NOTE}.")
  todo = configs(args, len(devices), jax.process_count())
  say(f"{args.what}: {len(todo)} configurations on {len(devices)} × {profiling.device_name(devices[0])} "
      f"({jax.process_count()} process(es)), budget {args.max_seconds:.0f} s")
  csv_path = Path(args.out) / f"scaling_{args.what}.csv"
  rows = read_csv(csv_path) if args.append and lead else []
  for i, cfg in enumerate(todo, 1):
    if agreed(time.perf_counter() > deadline):
      say(f"time budget of {args.max_seconds:.0f} s spent: {len(todo) - i + 1} configurations left out")
      break
    row = measure(args, cfg, devices, deadline)
    rows.append(row)
    say(f"[{i}/{len(todo)} {time.perf_counter() - t_start:5.0f} s] {fmt_row(row)}")
    if lead:
      write_outputs(args, rows, devices)        # after every config: a killed sweep keeps its rows
  if lead:
    write_outputs(args, rows, devices)
  say(f"wrote {Path(args.out).resolve()}/scaling_{args.what}.{{csv,md,png}}")
  return rows


if __name__ == "__main__":
  main()

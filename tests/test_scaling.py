"""The scaling sweep end to end on 2 simulated CPU devices (tiny model), and its helpers."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import scaling

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_on_two_simulated_devices_writes_csv_markdown_and_plot(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "experiments.scaling", "--what", "infer", "--model", "tiny",
         "--resolutions", "32", "--batches", "2", "--scaling", "strong", "--dtypes", "float32",
         "--repeats", "2", "--out", str(tmp_path)]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "share the same cores" in proc.stdout
  with open(tmp_path / "scaling_infer.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["scaling"], r["devices"], r["global_batch"]) for r in rows] == [("strong", "2", "2"),
                                                                             ("base", "1", "2")]
  for r in rows:
    assert r["status"] == "ok", r
    assert float(r["img_per_s"]) > 0 and float(r["ms_per_step"]) > 0
    assert float(r["gflop_per_img"]) > 0 and float(r["compile_s"]) > 0
    assert r["peak_tflops"] == "" and r["platform"] == "cpu"      # CPU: no peak figure
  md = (tmp_path / "scaling_infer.md").read_text()
  assert "simulated" in md and "| strong | 2 | 2 | 32² | float32 | ok |" in md
  assert (tmp_path / "scaling_infer.png").stat().st_size > 10_000


def test_time_budget_ends_cleanly_with_the_files_written(tmp_path):
  rows = scaling.main(["--what", "infer", "--model", "tiny", "--resolutions", "32", "--batches", "1",
                       "--max-seconds", "0", "--out", str(tmp_path)])
  assert rows == []
  assert (tmp_path / "scaling_infer.csv").read_text().startswith("what,scaling,devices")


def test_configs_order_and_device_counts():
  assert scaling.device_counts(1, None) == [1]
  assert scaling.device_counts(8, None) == [1, 2, 4, 8]
  assert scaling.device_counts(6, None) == [1, 2, 4, 6]
  assert scaling.device_counts(4, [1, 3, 16]) == [1, 3]
  args = scaling.parse_args(["--resolutions", "512,256", "--batches", "4", "--dtypes", "bfloat16"])
  todo = scaling.configs(args, 4)
  # strong: global 4 over 1, 2, 4 devices; weak: 4 per device; one shared one-device baseline.
  assert {(c.scaling, c.devices, c.global_batch) for c in todo if c.resolution == 256} == {
      ("base", 1, 4), ("strong", 2, 4), ("strong", 4, 4), ("weak", 2, 8), ("weak", 4, 16)}
  assert [c.resolution for c in todo] == sorted(c.resolution for c in todo)
  args = scaling.parse_args(["--res-batches", "512:64,16;256:256", "--dtypes", "bfloat16", "--devices", "1"])
  # Ordered by pixels per device (memory), then resolution.
  assert [(c.resolution, c.global_batch) for c in scaling.configs(args, 1)] == [
      (512, 16), (256, 256), (512, 64)]
  args = scaling.parse_args(["--resolutions", "256,2048", "--megapixels-per-device", "4", "--devices", "1"])
  assert [(c.resolution, c.global_batch) for c in scaling.configs(args, 1)
          if c.dtype == "float32"] == [(256, 64), (2048, 1)]


class _Dev:
  platform, device_kind = "gpu", "NVIDIA H100 80GB HBM3"


def test_peak_table_and_oom_detection():
  assert scaling.peak_tflops(_Dev(), "bfloat16")[0] == pytest.approx(989.4)
  assert scaling.peak_tflops(_Dev(), "float32")[0] == pytest.approx(494.7)
  assert scaling.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
  assert not scaling.is_oom(ValueError("shapes do not match"))


SHARDING_PROBE = """
import json, re, jax, jax.numpy as jnp
from experiments import scaling
from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import sharding
cfg = model.MODEL_CONFIGS["tiny"]
out = {}
for n in (1, 2):
  mesh = sharding.data_mesh(jax.devices()[:n])
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  bat = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
                        scaling.random_params(cfg))
  x = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32, sharding=bat)
  k = jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=rep)
  compiled = portrait.make_program(cfg, mesh).lower(params, portrait.Batch(x, x), k).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  out[n] = {"flops": cost["flops"], "gathers": len(re.findall(r"all-gather", compiled.as_text()))}
print(json.dumps(out))
"""


def test_portrait_program_splits_the_batch_without_gathering_it():
  """Per-device FLOPs halve on 2 devices and no all-gather appears (regions × batch kept batch-major)."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  proc = subprocess.run([sys.executable, "-c", SHARDING_PROBE], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["2"]["gathers"] == 0
  assert out["2"]["flops"] == pytest.approx(out["1"]["flops"] / 2, rel=0.02)

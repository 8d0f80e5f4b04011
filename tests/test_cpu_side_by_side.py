"""benchmarks/cpu_side_by_side.py's bookkeeping: its CSV, merged across runs; its SSIM; the CPU's bf16 flags."""
import csv

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks import cpu_side_by_side as cbs  # noqa: E402


def row(program, size, dtype, ms):
  return {"program": program, "size": size, "batch": 1, "dtype": dtype, "jax_ms": ms, "torch_eager_ms": 2 * ms,
          "cpu": "a CPU", "isa": "an ISA"}


def test_csv_columns_and_rows_of_other_runs_kept(tmp_path):
  path = tmp_path / "cpu_side_by_side.csv"
  cbs.write_csv(path, [row("portrait", 512, "bfloat16", 9.0), row("plain", 512, "float32", 8.0)])
  cbs.write_csv(path, [row("plain", 1024, "float32", 7.0), row("plain", 512, "float32", 6.0)])
  with path.open() as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert tuple(reader.fieldnames) == ("program", "size", "batch", "dtype", "jax_ms", "torch_eager_ms",
                                     "torch_compile_ms", "jax_first_ms", "torch_eager_first_ms",
                                     "torch_compile_first_ms", "cpu", "isa")
  assert all(r["torch_compile_ms"] == "" for r in rows)      # rows without a torch.compile column kept
  assert [(r["program"], r["size"], r["dtype"], r["jax_ms"]) for r in rows] == [
      ("plain", "512", "float32", "6.0"), ("plain", "1024", "float32", "7.0"), ("portrait", "512", "bfloat16", "9.0")]


def test_ssim_is_one_for_equal_images_and_drops_with_noise():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(32, 40)).astype(np.float32)
  assert cbs.ssim(a, a) == pytest.approx(1.0)
  noisy = lambda sigma: np.clip(a + rng.normal(0, sigma, a.shape), 0, 1)
  assert cbs.ssim(a, noisy(0.3)) < cbs.ssim(a, noisy(0.1)) < 0.99


def test_bf16_flags_of_cpuinfo():
  amx = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx512f amx_int8 avx512_bf16 amx_tile amx_bf16\n"
  assert cbs.bf16_flags(amx) == "avx512_bf16 amx_bf16 amx_tile amx_int8"        # BF16_FLAGS' order
  assert cbs.bf16_flags("flags\t\t: fpu avx2 fma\n") == "no bf16 flags"
  assert cbs.bf16_flags("") == "no bf16 flags"

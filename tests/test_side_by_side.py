"""benchmarks/gpu_side_by_side.py end to end on CPU with the tiny model: the PyTorch peer computes what
the JAX programs compute, and the CSV has the columns the GPU run is read by.

torch.compile is left out (its first call takes minutes on a busy 2-core CPU); the committed CPU run
``docs/runs/side_by_side_cpu_tiny.csv`` has it.
"""
import csv

import pytest

pytest.importorskip("torch")

from benchmarks import gpu_side_by_side as sbs  # noqa: E402

COLUMNS = ("program", "size", "batch", "dtype", "jax_img_per_s", "torch_eager_img_per_s",
           "torch_compile_img_per_s", "device", "max_abs_diff_eager", "max_abs_diff_compile")


def test_tiny_side_by_side_with_the_gpu_switches(tmp_path):
  """SDPA attention and channels_last (the CUDA settings) on CPU: both programs equal JAX's."""
  out = tmp_path / "side_by_side.csv"
  rows = sbs.main(["--model", "tiny", "--size", "32", "--batch", "2", "--repeats", "1", "--no-torch-compile",
                   "--attention", "sdpa", "--channels-last", "--out", str(out)])
  assert [r.program for r in rows] == ["plain", "portrait"]
  for r in rows:
    assert r.max_abs_diff_eager < 1e-4, r
    assert r.jax_img_per_s > 0 and r.torch_eager_img_per_s > 0 and r.torch_compile_img_per_s is None
  with out.open() as f:
    written = list(csv.DictReader(f))
  assert set(COLUMNS) <= set(written[0])
  assert [(w["program"], w["size"], w["batch"], w["dtype"]) for w in written] == [
      ("plain", "32", "2", "float32"), ("portrait", "32", "2", "float32")]
  assert written[0]["attention"] == "sdpa" and written[0]["channels_last"] == "True"


def test_reduced_precision_is_compared_with_the_float32_program(tmp_path):
  """bfloat16 on both sides (the GPU run's dtype): JAX's change from float32 reported, and torch as
  close to JAX as two bfloat16 roundings of one float32 program can be (each within that change of it).
  Measured 2026-11-29 on CPU (tiny model, random weights of ``model.init_params``): 0.16 and 0.20."""
  rows = sbs.main(["--model", "tiny", "--programs", "plain", "--size", "32", "--batch", "2", "--repeats", "1",
                   "--dtype", "bfloat16", "--no-torch-compile", "--f32-check-batch", "2",
                   "--out", str(tmp_path / "bf16.csv")])
  (r,) = rows
  assert r.dtype == "bfloat16"
  assert r.max_abs_diff_vs_jax_f32 is not None and 0 < r.max_abs_diff_vs_jax_f32 < 0.2
  assert r.max_abs_diff_eager < 2 * r.max_abs_diff_vs_jax_f32

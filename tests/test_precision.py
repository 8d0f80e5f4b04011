"""``--dtype auto``: the choice on fake machine descriptions, the one line it says, and the defaults."""
import pytest

from jaxstyle.app import request
from jaxstyle.program import precision
from jaxstyle.program.precision import resolve_dtype


@pytest.mark.parametrize("backend", ["gpu", "cuda", "rocm", "tpu"])
def test_auto_is_bf16_on_accelerators(backend):
  choice = resolve_dtype("auto", backend)
  assert choice.dtype == "bfloat16" and backend in choice.reason


@pytest.mark.parametrize("isa", ["avx512_core_amx", "avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx_fp16"])
def test_auto_is_bf16_on_cpus_whose_bf16_units_onednn_finds(isa):
  choice = resolve_dtype("auto", "cpu", onednn_problem=None, isa=isa, bf16_units=True)
  assert choice.dtype == "bfloat16" and isa in choice.reason


@pytest.mark.parametrize("problem, isa, units, says", [
    (None, "avx2", False, "no bf16 dot-product instructions (oneDNN ISA avx2)"),       # AMD Zen 3, Skylake
    (None, "avx512_core", False, "ISA avx512_core"),                                  # AVX-512 without bf16
    ("oneDNN's CPU library (onednn-cpu-gomp) is not installed", None, False, "not installed"),
    ("the oneDNN extension did not load (x)", "avx512_core_amx", True, "did not load"),  # units, no kernels
])
def test_auto_is_float32_on_other_cpus(problem, isa, units, says):
  choice = resolve_dtype("auto", "cpu", onednn_problem=problem, isa=isa, bf16_units=units)
  assert choice.dtype == "float32" and says in choice.reason


def test_unknown_backends_stay_float32_and_forced_dtypes_are_kept():
  assert resolve_dtype("auto", "metal").dtype == "float32"
  for backend in ("cpu", "gpu", "tpu"):
    for dtype in ("float32", "bfloat16"):
      assert resolve_dtype(dtype, backend, bf16_units=True).dtype == dtype
  with pytest.raises(ValueError, match="auto, float32, bfloat16"):
    resolve_dtype("float16", "cpu")


def test_choose_says_once_what_auto_chose(monkeypatch):
  monkeypatch.delenv(precision.AUTO_VARIABLE, raising=False)
  monkeypatch.setattr(precision, "_said", set())
  lines = []
  dtype = precision.choose("auto", lines.append)
  assert dtype in ("float32", "bfloat16")
  assert precision.choose("auto", lines.append) == dtype and len(lines) == 1    # once a process
  assert lines[0].startswith(f"--dtype auto: computing in {dtype}: ")
  assert precision.choose("float32", lines.append) == "float32" and len(lines) == 1   # forced: silent


def test_this_machine_matches_what_onednn_reports(monkeypatch):
  monkeypatch.delenv(precision.AUTO_VARIABLE, raising=False)
  import jax  # pylint: disable=g-import-not-at-top
  from jaxstyle.nets import onednn  # pylint: disable=g-import-not-at-top
  fast = jax.default_backend() != "cpu" or (onednn.unavailable() is None and onednn.has_bf16_units())
  assert precision.machine_choice("auto").dtype == ("bfloat16" if fast else "float32")


def test_the_variable_fixes_auto(monkeypatch):
  monkeypatch.setenv(precision.AUTO_VARIABLE, "bfloat16")
  assert precision.machine_choice("auto").dtype == "bfloat16"
  assert precision.machine_choice("float32").dtype == "float32"
  monkeypatch.setenv(precision.AUTO_VARIABLE, "fp8")
  with pytest.raises(ValueError, match=precision.AUTO_VARIABLE):
    precision.machine_choice("auto")


def test_auto_is_the_default_everywhere():
  import inspect  # pylint: disable=g-import-not-at-top
  from jaxstyle.app import studio, studio_ui  # pylint: disable=g-import-not-at-top
  from jaxstyle.commands import portrait as portrait_cmd, studio as studio_cmd  # pylint: disable=g-import-not-at-top
  from jaxstyle.program.runner import Runner  # pylint: disable=g-import-not-at-top
  assert request.DTYPES == precision.DTYPES and request.Request(content=(), style=()).dtype == "auto"
  for fn in (Runner.load, studio.Studio.__init__, studio_ui.serve):
    assert inspect.signature(fn).parameters["dtype"].default == "auto", fn
  args = portrait_cmd.build_parser().parse_args(["--content", "a.jpg", "--style", "b.jpg"])
  assert args.dtype == "auto" and studio_cmd.build_parser().parse_args([]).dtype == "auto"


# bf16 against float32 with the shipped weights, portrait program at 128 px (measured 2026-12-07 on XLA's
# bf16 path: the picture 38.9 dB, its regions 39.5 / 42.9 dB, the masks' IoU 0.997; docs/scaling.md has
# 39.3 dB at 512² on oneDNN). The picture's worst pixels are where the mask's edge moved by a pixel.
MIN_PSNR = {"image": 33.0, "background": 36.0, "person": 38.0}
MIN_MASK_IOU = 0.98


def test_bf16_is_close_to_float32_on_a_real_pair():
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxstyle.checkpoints import loading  # pylint: disable=g-import-not-at-top
  from jaxstyle.io import assets, image_io, weights  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait, sharding  # pylint: disable=g-import-not-at-top
  try:
    params, cfg = loading.load(None)
  except weights.WeightsError as e:
    pytest.skip(f"shipped weights not usable here: {e}")
  content = image_io.load_image(assets.examples("content") / "grace_hopper.jpg", 128)[None]
  style = image_io.load_image(assets.examples("styles") / "starry_night.jpg", 128)[None]
  mesh = sharding.data_mesh(jax.devices()[:1])
  outs = {dtype: {k: np.asarray(v[0], np.float32) for k, v in portrait.make_program(
      dataclasses.replace(cfg, dtype=dtype), mesh)(params, portrait.Batch(content, style),
                                                   portrait.Controls().as_array()).items()}
          for dtype in ("float32", "bfloat16")}
  f32, bf16 = outs["float32"], outs["bfloat16"]
  for k, bound in MIN_PSNR.items():
    psnr = 10 * np.log10(1 / np.mean((f32[k] - bf16[k]) ** 2))
    assert psnr >= bound, (k, psnr)
  a, b = f32["mask"] >= 0.5, bf16["mask"] >= 0.5
  assert (a & b).sum() / (a | b).sum() >= MIN_MASK_IOU


def test_the_runner_says_its_choice_with_the_first_program_not_at_loading():
  """A run refused before computing (a bad content, say) ends with its one ``error:`` line alone."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxstyle.nets import model  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top
  from jaxstyle.program.runner import Runner  # pylint: disable=g-import-not-at-top
  lines = []
  runner = Runner({}, model.MODEL_CONFIGS["tiny"], sharding.data_mesh(jax.devices()[:1]),
                  note="--dtype auto: computing in float32: a test", log=lines.append)
  assert lines == []
  runner.program()
  runner.program(mode="plain")
  assert lines == ["--dtype auto: computing in float32: a test"]

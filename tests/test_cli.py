"""``stylize_files`` and ``python -m infer.portrait`` end to end with tiny random weights.

Compiles are the cost here (each ~10 s on CPU): one in-process run (user mask + plain for the sheet),
one CLI subprocess (SegNet), one 4-device subprocess (1- and 4-device programs). Every error case stops
before compiling.
"""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infer import portrait as cli
from jaxstyle.app import plan as plan_lib
from jaxstyle.app import sources
from jaxstyle.app import stylize_files
from jaxstyle.app.request import Request, Settings
from jaxstyle.checkpoints import loading
from jaxstyle.io import weights
from jaxstyle.nets import model
from jaxstyle.program import runner

CFG = model.MODEL_CONFIGS["tiny"]
CONTENT_WH, STYLE_WH = (40, 48), (32, 32)


@pytest.fixture(autouse=True)
def no_home_compile_cache(monkeypatch):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")   # tests never fill the user's compile cache


def write_image(path, wh, seed=0):
  path.parent.mkdir(parents=True, exist_ok=True)
  arr = np.random.default_rng(seed).integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)
  Image.fromarray(arr).save(path)
  return path


@pytest.fixture
def inputs(tmp_path):
  content = write_image(tmp_path / "in" / "me.png", CONTENT_WH, 1)
  styles = [write_image(tmp_path / "styles" / name, STYLE_WH, seed)
            for seed, name in enumerate(["wave.png", "starry.jpg"], start=2)]
  (tmp_path / "styles" / ".hidden.png").write_bytes(b"")   # hidden files are skipped
  (tmp_path / "styles" / "notes.txt").write_text("not a style")
  return content, styles


def snapshot(paths):
  return {p: p.read_bytes() for p in paths}


def run_cli(argv, capsys):
  code = cli.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def assert_one_line_error(code, err, *words):
  assert code == 2
  assert err.startswith("error: ") and err.count("\n") == 1, err
  for word in words:
    assert word in err, err


# --- pure planning ----------------------------------------------------------------------------------


def test_expand_and_plan(inputs, tmp_path):
  content, styles = inputs
  found = sources.expand_inputs([tmp_path / "styles", styles[0]], "--style")
  assert found == sorted(styles, key=lambda p: p.name)     # sorted, no repeats, no hidden/txt files
  req = Request(content=[str(content)], style=[str(tmp_path / "styles")], output=str(tmp_path / "out"),
                save_mask=True, sheet=str(tmp_path / "sheets"))
  jobs = plan_lib.plan_jobs([content], found, req)
  assert [j.image.name for j in jobs] == ["me__starry.png", "me__wave.png"]
  assert jobs[0].mask == tmp_path / "out" / "me__starry.mask.png"
  assert jobs[0].sheet == tmp_path / "sheets" / "me__starry.png"
  req = dataclasses.replace(req, output=str(tmp_path / "r.jpg"))
  one = plan_lib.plan_jobs([content], found[:1], req)
  assert one[0].image == tmp_path / "r.jpg" and one[0].mask == tmp_path / "r.mask.png"


def test_model_load_dtype_and_needed_networks(tiny_weights):
  params, cfg = loading.load(tiny_weights, runner.networks_for("plain", False), dtype="bfloat16")
  assert cfg.dtype == "bfloat16" and cfg.encoder_blocks == CFG.encoder_blocks
  assert sorted(params) == ["decoder", "encoder", "transform"]
  params, _ = loading.load(tiny_weights, runner.networks_for("portrait", False))
  assert sorted(params) == ["decoder", "encoder", "segnet", "transform"]


# --- end to end -------------------------------------------------------------------------------------


def test_run_user_mask_sheet_and_masks(inputs, tiny_weights, tmp_path):
  content, styles = inputs
  mask = np.zeros((CONTENT_WH[1], CONTENT_WH[0]), np.uint8)
  mask[:, :CONTENT_WH[0] // 2] = 255
  Image.fromarray(mask).save(tmp_path / "in" / "me_mask.png")
  before = snapshot([content, *styles, tmp_path / "in" / "me_mask.png"])
  messages = []
  req = Request(content=[str(content)], style=[str(tmp_path / "styles")], output=str(tmp_path / "out"),
                weights=str(tiny_weights), settings=Settings(size=0, feather=0.0),
                mask=str(tmp_path / "in" / "me_mask.png"), save_mask=True, sheet=True)
  written = stylize_files.run(req, log=messages.append, progress=False)

  out = tmp_path / "out"
  assert [p.name for p in written] == ["me__starry.png", "me__starry.mask.png", "me__starry.sheet.png",
                                       "me__wave.png", "me__wave.mask.png", "me__wave.sheet.png"]
  assert sorted(os.listdir(out)) == sorted(p.name for p in written)      # no temp files left
  # One program (the sheet's plain panel is the portrait program's background row), padded shapes.
  assert messages == ["compiling the portrait program for contents padded to 48x48, styles to 32x32 "
                      "(batch 1, 2 pairs; first call, can take a minute unless cached)"]
  for name in ("me__starry", "me__wave"):
    img = Image.open(out / f"{name}.png")
    assert img.size == CONTENT_WH and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}.mask.png")), mask)  # feather 0
    sheet = Image.open(out / f"{name}.sheet.png")
    assert sheet.height > CONTENT_WH[1] and sheet.width > 5 * CONTENT_WH[0] + STYLE_WH[0]
  assert snapshot(before) == before


def test_mixed_sizes_share_one_bucket_and_come_back_at_their_own_size(tiny_weights, tmp_path):
  photos = [write_image(tmp_path / "in" / f"{i}.png", wh, i) for i, wh in enumerate([(40, 48), (46, 36)])]
  style = write_image(tmp_path / "s" / "s.png", (24, 40), 5)
  messages = []
  req = Request(content=[str(tmp_path / "in")], style=[str(style)], output=str(tmp_path / "out"),
                weights=str(tiny_weights), settings=Settings(size=0), save_mask=True)
  stylize_files.run(req, log=messages.append, progress=False)
  assert len(messages) == 1 and "contents padded to 48x48, styles to 48x48" in messages[0], messages
  for photo, wh in zip(photos, [(40, 48), (46, 36)]):
    assert Image.open(tmp_path / "out" / f"{photo.stem}__s.png").size == wh
    assert Image.open(tmp_path / "out" / f"{photo.stem}__s.mask.png").size == wh


def test_compile_cache_folder_and_switch(monkeypatch, tmp_path):
  from jaxstyle.program import compile_cache
  monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "c"))
  monkeypatch.delenv("JAXSTYLE_COMPILE_CACHE")
  assert compile_cache.cache_dir() == tmp_path / "c" / "xla"        # on by default
  for off in ("0", "off", "false"):
    monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", off)
    assert compile_cache.cache_dir() is None and compile_cache.enable() is None
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", str(tmp_path / "elsewhere"))
  assert compile_cache.cache_dir() == tmp_path / "elsewhere"


REPO = Path(__file__).resolve().parents[1]


def cli_env(**extra):
  """The environment of a CLI run from another folder: the repository's entry points (``infer``,
  ``train``) are not installed packages, so they are found through ``PYTHONPATH``."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return {**env, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", "PYTHONPATH": str(REPO), **extra}


def test_cli_subprocess_one_pair_to_one_file(inputs, tiny_weights, tmp_path):
  content, styles = inputs
  result = tmp_path / "result" / "me.jpg"
  argv = ["--content", content, "--style", styles[0], "--output", result, "--size", "32",
          "--weights", tiny_weights]
  cache = tmp_path / "xla"
  proc = subprocess.run([sys.executable, "-m", "infer.portrait", *argv], capture_output=True, text=True,
                        env=cli_env(JAXSTYLE_COMPILE_CACHE=str(cache)), cwd=tmp_path, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == [str(result)]
  assert "compiling the portrait program for contents padded to 32x32, styles to 32x32" in proc.stderr
  assert any(cache.iterdir())                               # the program went into the compile cache
  img = Image.open(result)
  assert img.format == "JPEG" and img.size == (27, 32)      # 40x48 with the longest side 32


# --- bad input: one line, exit 2, nothing written -----------------------------------------------------


def test_bad_image_in_a_folder(inputs, tiny_weights, tmp_path, capsys):
  content, _ = inputs
  (tmp_path / "styles" / "broken.jpg").write_text("this is not a jpeg")
  code, out, err = run_cli(["--content", content, "--style", tmp_path / "styles", "-o", tmp_path / "o",
                            "--weights", tiny_weights], capsys)
  assert_one_line_error(code, err, "broken.jpg", "not an image")
  assert not (tmp_path / "o").exists()


def test_output_is_an_input(inputs, tiny_weights, capsys):
  content, styles = inputs
  before = snapshot([content])
  code, _, err = run_cli(["--content", content, "--style", styles[0], "-o", content,
                          "--weights", tiny_weights], capsys)
  assert_one_line_error(code, err, "refusing to overwrite an input")
  assert snapshot([content]) == before


@pytest.mark.parametrize("argv,words", [
    (["--style", "s.png"], ["required: --content"]),
    (["--content", "c.png", "--style", "s.png", "--dtype", "float64"], ["invalid choice"]),
    (["--content", "c.png", "--style", "s.png", "--frobnicate"], ["unrecognized arguments"]),
    (["--content", "c.png", "--style", "s.png", "--mode", "plain", "--mask", "m.png"],
     ["--mode portrait"]),
    (["--content", "nope.png", "--style", "s.png"], ["nope.png: no such file"]),
])
def test_usage_errors(argv, words, capsys):
  code, _, err = run_cli(argv, capsys)
  assert_one_line_error(code, err, *words)


def test_many_pairs_into_one_file_and_name_collisions(inputs, tiny_weights, tmp_path, capsys):
  content, _ = inputs
  code, _, err = run_cli(["--content", content, "--style", tmp_path / "styles", "-o", tmp_path / "x.png",
                          "--weights", tiny_weights], capsys)
  assert_one_line_error(code, err, "names one file but there are 2")
  write_image(tmp_path / "in" / "me.jpg", CONTENT_WH)
  code, _, err = run_cli(["--content", tmp_path / "in", "--style", tmp_path / "styles",
                          "-o", tmp_path / "o", "--weights", tiny_weights], capsys)
  assert_one_line_error(code, err, "would be written twice")


def test_mask_of_another_picture(inputs, tiny_weights, tmp_path, capsys):
  content, styles = inputs
  write_image(tmp_path / "square_mask.png", (64, 64))
  code, _, err = run_cli(["--content", content, "--style", styles[0], "-o", tmp_path / "o",
                          "--mask", tmp_path / "square_mask.png", "--weights", tiny_weights], capsys)
  assert_one_line_error(code, err, "aspect ratio")


# --- weights: say how to get them, never run with random ones --------------------------------------


def test_missing_weights_message(inputs, tmp_path, capsys):
  content, styles = inputs
  code, _, err = run_cli(["--content", content, "--style", styles[0], "-o", tmp_path / "o",
                          "--weights", tmp_path / "no_weights"], capsys)
  assert_one_line_error(code, err, "no weights in", "MANIFEST.json",
                        "python -m train.sanet --config train/configs/sanet.py --workdir runs/sanet",
                        "python -m jaxstyle.checkpoints.pretrained convert --vgg vgg_normalised.pth")
  assert not (tmp_path / "o").exists()


def test_weights_without_segnet(inputs, params, tmp_path, capsys):
  content, styles = inputs
  weights.save(tmp_path / "w", {k: v for k, v in params.items() if k != "segnet"}, "tiny",
               include_encoder=True)
  code, _, err = run_cli(["--content", content, "--style", styles[0], "--weights", tmp_path / "w"], capsys)
  assert_one_line_error(code, err, "lacks segnet.safetensors", "--mask FILE", "--mode plain")
  weights.save(tmp_path / "w2", {k: v for k, v in params.items() if k != "decoder"}, "tiny",
               include_encoder=True)
  code, _, err = run_cli(["--content", content, "--style", styles[0], "--weights", tmp_path / "w2"],
                         capsys)
  assert_one_line_error(code, err, "lacks decoder.safetensors", "python -m train.sanet")


def test_encoder_cache_missing(inputs, params, tmp_path, capsys, monkeypatch):
  content, styles = inputs
  monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "empty_cache"))
  weights.save(tmp_path / "w", params, "tiny")      # the encoder comes from jaxstyle.checkpoints.pretrained
  code, _, err = run_cli(["--content", content, "--style", styles[0], "--weights", tmp_path / "w"], capsys)
  assert_one_line_error(code, err, "ImageNet VGG-19", "python -m jaxstyle.checkpoints.pretrained fetch")


def test_weights_of_another_model_config(inputs, tiny_weights, tmp_path, capsys):
  content, styles = inputs
  other = tmp_path / "w"
  other.mkdir()
  for f in tiny_weights.iterdir():
    (other / f.name).write_bytes(f.read_bytes())
  manifest = json.loads((other / "MANIFEST.json").read_text())
  manifest["model_config"] = "sanet_published"
  (other / "MANIFEST.json").write_text(json.dumps(manifest))
  code, _, err = run_cli(["--content", content, "--style", styles[0], "--weights", other], capsys)
  assert_one_line_error(code, err, "does not fit model config 'sanet_published'")


def test_subprocess_errors_exit_2_without_traceback(inputs, tiny_weights, tmp_path):
  content, styles = inputs
  (tmp_path / "cut.png").write_bytes(content.read_bytes()[:200])
  for args, words in ((["--content", tmp_path / "cut.png", "--weights", tiny_weights], "truncated"),
                      (["--content", content, "--weights", tmp_path / "none"], "python -m train.sanet")):
    argv = ["--style", styles[0], "-o", tmp_path / "o", *args]
    proc = subprocess.run([sys.executable, "-m", "infer.portrait", *argv], capture_output=True, text=True,
                          env=cli_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


# --- the same program over 4 devices ----------------------------------------------------------------

MULTI_DEVICE = textwrap.dedent("""
    import functools, json
    import jax, numpy as np
    from jaxstyle.nets import model
    from jaxstyle.program import portrait
    from jaxstyle.program import sharding
    from jaxstyle.program.runner import Batch, Runner

    cfg = model.MODEL_CONFIGS["tiny"]
    params = jax.device_get(jax.jit(functools.partial(model.init_params, cfg, hw=(32, 32)))(
        jax.random.key(0)))
    rng = np.random.default_rng(0)
    contents = rng.random((4, 32, 48, 3), np.float32)
    styles = rng.random((4, 32, 32, 3), np.float32)
    controls = portrait.Controls().as_array()
    outs, run = {}, {}
    for n in (4, 1):
      mesh = sharding.data_mesh(jax.devices()[:n])
      r = Runner(jax.device_put(params, sharding.replicated(mesh)), cfg, mesh)
      run[n] = lambda c, s, r=r: r.program()(r.params, r.place(Batch(c, s)), controls)
      outs[n] = run[n](contents, styles)
    image = outs[4]["image"]
    # 3 pairs padded to the 4 devices give the same first 3 results (same shapes: no recompile)
    pad = lambda x: np.concatenate([x[:3], x[2:3]])
    padded = run[4](pad(contents), pad(styles))
    print(json.dumps({
        "devices": len(jax.devices()),
        "spans": len(image.sharding.device_set),
        "spec": list(image.sharding.spec),
        "shards": sorted({tuple(s.data.shape) for s in image.addressable_shards}),
        "max_diff": max(float(np.abs(np.asarray(outs[4][k]) - np.asarray(outs[1][k])).max())
                        for k in outs[4]),
        "pad_diff": float(np.abs(np.asarray(padded["image"])[:3] - np.asarray(image)[:3]).max()),
        "image_std": float(np.asarray(image).std()),
        "mask_std": float(np.asarray(outs[4]["mask"]).std()),
    }))
""")


def test_four_devices_match_one(tmp_path):
  proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE], capture_output=True, text=True, cwd=tmp_path,
                        env=cli_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"), timeout=400)
  assert proc.returncode == 0, proc.stderr
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  print(report)
  assert report["devices"] == 4 and report["spans"] == 4
  assert report["spec"] == ["data"], report
  assert report["shards"] == [[1, 32, 48, 3]]
  assert report["image_std"] > 1e-3 and report["mask_std"] > 1e-4     # outputs are not constant
  assert report["max_diff"] <= 1e-5
  assert report["pad_diff"] <= 1e-5

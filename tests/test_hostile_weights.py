"""Hostile and broken weights folders (issue 11): every case is built here from a valid tiny folder and
must end in one ``WeightsError`` naming the problem; folders are written whole, so a writer killed at any
moment leaves the old folder or the new one; a finished training run re-exports a broken export."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from jaxstyle.io import folder_swap
from jaxstyle.io import weights
from jaxstyle.io.weights import WeightsError
from jaxstyle.training import encoder_weights
from jaxstyle.training import loop

PARAMS = {"decoder": {"params": {"conv": {"kernel": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4),
                                          "bias": np.zeros(4, np.float32)}}},
          "transform": {"params": {"f": {"kernel": np.ones((3, 3), np.float32)}}}}


@pytest.fixture
def folder(tmp_path):
  directory = tmp_path / "w"
  weights.save(directory, PARAMS, "tiny", meta={"note": "valid"})
  return directory


def edit_manifest(directory, fn):
  manifest = json.loads((directory / weights.MANIFEST).read_text())
  fn(manifest)
  (directory / weights.MANIFEST).write_text(json.dumps(manifest))


def replace_file(directory, fname, data: bytes, dtype=None):
  """Writes ``data`` as ``fname`` with a matching sha256 (a crafted folder, not a corrupted one)."""
  (directory / fname).write_bytes(data)
  def fix(m):
    m["files"][fname]["sha256"] = weights.sha256_file(directory / fname)
    if dtype:
      m["files"][fname]["dtype"] = dtype
  edit_manifest(directory, fix)


# --- the manifest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("change,words", [
    (lambda m: m.update(files=["decoder.safetensors"]), "'files' must be a JSON object"),
    (lambda m: m.update(files=None), "'files' must be a JSON object"),
    (lambda m: m["files"]["decoder.safetensors"].pop("sha256"), "has no sha256"),
    (lambda m: m["files"]["decoder.safetensors"].update(dtype="int8"), "dtype 'int8'"),
    (lambda m: m.update(model_config=["tiny"]), "'model_config' must be a JSON string"),
    (lambda m: m.update(encoder="imagenet_vgg16"), "unknown encoder source 'imagenet_vgg16'"),
    (lambda m: m["files"]["decoder.safetensors"].update(params=5), "holds 28 values, the manifest says 5"),
    (lambda m: m["files"].update({"../../etc/hostname": m["files"]["decoder.safetensors"]}),
     "'../../etc/hostname' in MANIFEST.json is not a plain NAME.safetensors"),
    (lambda m: m["files"].update({"/etc/hostname": m["files"]["decoder.safetensors"]}), "not a plain"),
    (lambda m: m["files"].update({"sub/x.safetensors": m["files"]["decoder.safetensors"]}), "not a plain"),
    (lambda m: m["files"].update({".hidden.safetensors": m["files"]["decoder.safetensors"]}), "not a plain"),
])
def test_malformed_manifests(folder, change, words):
  edit_manifest(folder, change)
  with pytest.raises(WeightsError, match=None) as e:
    weights.load(folder)
  assert words in str(e.value) and "\n" not in str(e.value)


def test_manifest_outside_names_are_never_opened(folder, monkeypatch):
  """``../x`` is refused from its name alone: the file outside is not read or hashed."""
  secret = folder.parent / "secret.safetensors"
  secret.write_bytes(st_save({"k": np.zeros(1, np.float16)}))
  edit_manifest(folder, lambda m: m["files"].update(
      {"../secret.safetensors": {"sha256": weights.sha256_file(secret), "dtype": "float16"}}))
  opened = []
  monkeypatch.setattr(weights, "sha256_file", lambda p: opened.append(p))
  with pytest.raises(WeightsError, match="not a plain"):
    weights.load(folder)
  assert not opened


def test_deep_huge_and_non_object_json(folder):
  (folder / weights.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
  with pytest.raises(WeightsError, match="nested too deeply"):
    weights.load(folder)
  (folder / weights.MANIFEST).write_text("[]")
  with pytest.raises(WeightsError, match="expected a JSON object, got list"):
    weights.load(folder)
  (folder / weights.MANIFEST).write_bytes(b" " * (weights.MAX_MANIFEST_BYTES + 1))
  with pytest.raises(WeightsError, match="more than a manifest's"):
    weights.load(folder)


# --- the tensors ----------------------------------------------------------------------------------


def decoder_with(value_fn, dtype="float16"):
  k = PARAMS["decoder"]["params"]["conv"]
  return st_save({"params/conv/kernel": value_fn(k["kernel"].astype(dtype)),
                  "params/conv/bias": k["bias"].astype(dtype)})


def set_first(x, v):
  x = x.copy()
  x.flat[0] = v
  return x


@pytest.mark.parametrize("data,dtype,words", [
    (decoder_with(lambda k: k * np.nan), None, "24 NaN or infinite value(s) of 24"),
    (decoder_with(lambda k: set_first(k, np.inf)), None, "1 NaN or infinite"),
    (decoder_with(lambda k: set_first(k, np.nan)), None, "1 NaN or infinite"),
    (decoder_with(lambda k: set_first(k, 6e4)), None, "values up to 6e+04"),
    (decoder_with(lambda k: k > 0, "float16"), None, "params/conv/kernel is bool, the manifest says float16"),
    (st_save({"params/conv/kernel": np.ones(3, np.uint8)}), None, "is uint8, the manifest says float16"),
    (decoder_with(lambda k: k), "float32", "is float16, the manifest says float32"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", None, "not a readable safetensors file"),
    (decoder_with(lambda k: k)[:-7], None, "not a readable safetensors file"),
    (os.urandom(300), None, "not a readable safetensors file"),
    (st_save({"params/conv": np.ones(2, np.float16), "params/conv/kernel": np.ones(2, np.float16)}), None,
     "key 'params/conv"),
])
def test_bad_tensors(folder, data, dtype, words):
  replace_file(folder, "decoder.safetensors", data, dtype)
  with pytest.raises(WeightsError) as e:
    weights.load(folder)
  assert words in str(e.value) and "decoder.safetensors" in str(e.value), str(e.value)


def test_symlinked_file_is_refused(folder, tmp_path):
  target = tmp_path / "elsewhere.safetensors"
  target.write_bytes((folder / "decoder.safetensors").read_bytes())
  (folder / "decoder.safetensors").unlink()
  (folder / "decoder.safetensors").symlink_to(target)
  with pytest.raises(WeightsError, match="not a plain file"):
    weights.load(folder)


def test_save_refuses_non_finite_params(tmp_path):
  bad = {"decoder": {"params": {"b": np.array([1.0, np.nan], np.float32)}}}
  with pytest.raises(WeightsError, match="NaN"):
    weights.save(tmp_path / "w", bad, "tiny")
  assert not (tmp_path / "w").exists() and not list(tmp_path.iterdir())   # nothing half-written


# --- whole-folder writes --------------------------------------------------------------------------


def test_update_keeps_other_files_and_drops_broken_networks(folder):
  (folder / "MODEL_CARD.md").write_text("card")
  (folder / "transform.safetensors").write_bytes(b"broken")     # sha mismatch: an older, broken export
  with pytest.warns(UserWarning, match="transform.safetensors is missing or does not match"):
    manifest = weights.update(folder, {"segnet": PARAMS["decoder"]}, "tiny", meta={"segnet": {"steps": 1}})
  assert sorted(manifest["files"]) == ["decoder.safetensors", "segnet.safetensors"]
  assert (folder / "MODEL_CARD.md").read_text() == "card"
  assert manifest["meta"] == {"note": "valid", "segnet": {"steps": 1}}
  weights.check_folder(folder)
  assert sorted(p.name for p in folder.parent.iterdir()) == ["w"]   # no temporary siblings


def test_update_repairs_an_unreadable_manifest(folder):
  (folder / weights.MANIFEST).write_text("{truncated")
  with pytest.warns(UserWarning, match="unreadable"):
    weights.update(folder, PARAMS, "tiny")
  weights.check_folder(folder)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from jaxstyle.io import weights
    i = 0
    while True:       # alternate two versions of a 4-network folder until killed
      v = np.full((64, 64), float(i % 2), np.float32)
      weights.update(sys.argv[1], {f"n{j}": {"params": {"k": v + j}} for j in range(4)}, "tiny",
                     meta={"version": i % 2})
      i += 1
""")


def test_kill_during_update_leaves_old_or_new_folder(tmp_path):
  directory = tmp_path / "w"
  weights.save(directory, {f"n{j}": {"params": {"k": np.full((64, 64), j, np.float32)}} for j in range(4)},
               "tiny", meta={"version": 0})
  rng = np.random.default_rng(0)
  versions = set()
  for _ in range(12):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)])
    time.sleep(0.5 + rng.uniform(0, 1.0))     # the interpreter starts in ~0.3 s, then writes in a loop
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    params, manifest = weights.load(directory)   # raises on a mix (sha mismatch, missing file)
    version = manifest["meta"]["version"]
    versions.add(version)
    for j in range(4):
      np.testing.assert_array_equal(params[f"n{j}"]["params"]["k"], np.full((64, 64), version + j))
  assert versions <= {0, 1}
  weights.update(directory, {}, "tiny")        # the next writer clears what killed ones left
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


# --- a finished training run re-exports a missing or broken export ------------------------------


def export(directory, steps):
  return encoder_weights.export_weights(directory, PARAMS, trainer="sanet", encoder="imagenet",
                                        include_encoder=False, model_config="tiny", dtype="float16",
                                        meta={"steps": steps})


def test_export_is_skipped_when_intact_and_redone_when_broken(tmp_path):
  directory = tmp_path / "weights"
  export(directory, 10)
  stamp = (directory / "decoder.safetensors").stat().st_ino
  export(directory, 10)                                      # intact, same step: untouched
  assert (directory / "decoder.safetensors").stat().st_ino == stamp
  (directory / "decoder.safetensors").write_bytes(b"half")   # broken by an older, non-atomic writer
  export(directory, 10)
  weights.check_folder(directory)
  (directory / "transform.safetensors").unlink()
  export(directory, 10)
  assert "transform.safetensors" in weights.check_folder(directory)["files"]
  (directory / weights.MANIFEST).unlink()
  export(directory, 10)
  assert weights.check_folder(directory)["meta"]["sanet"]["steps"] == 10


def test_finished_run_runs_its_end_hooks_again():
  calls = []
  state = types.SimpleNamespace(step=np.int32(5))
  hooks = [loop.Hook(every=100, fn=lambda step, s: calls.append(("export", step))),
           loop.Hook(every=1, fn=lambda step, s: calls.append(("log", step)), at_end=False)]
  out = loop.run_loop(state, None, None, loop.LoopConfig(num_steps=5, global_batch=1, log_every=1),
                          checkpointer=None, writer=None, hooks=hooks)
  assert out is state and calls == [("export", 5)]


def test_save_over_a_symlinked_folder(tmp_path):
  real = tmp_path / "real"
  weights.save(real, PARAMS, "tiny", meta={"v": 0})
  (tmp_path / "link").symlink_to(real)
  weights.save(tmp_path / "link", PARAMS, "tiny", meta={"v": 1})
  assert weights.check_folder(tmp_path / "link")["meta"] == {"v": 1}
  assert weights.check_folder(real)["meta"] == {"v": 0}        # the link's target is left alone
  assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_save_over_a_file(tmp_path):
  (tmp_path / "w").write_text("a file where the folder goes")
  weights.save(tmp_path / "w", PARAMS, "tiny")
  weights.check_folder(tmp_path / "w")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_without_an_atomic_exchange_a_kill_between_renames_keeps_the_old_folder(tmp_path, monkeypatch):
  """Other systems take two renames; a writer killed between them (the old folder moved aside, the new
  one not yet in place) is undone by the next writer, which finds the old folder first."""
  monkeypatch.setattr(folder_swap, "_exchange", lambda a, b: False)
  directory = tmp_path / "w"
  weights.save(directory, PARAMS, "tiny", meta={"v": 0})
  weights.save(directory, PARAMS, "tiny", meta={"v": 1})        # the two-rename path
  assert weights.check_folder(directory)["meta"] == {"v": 1}
  os.rename(directory, tmp_path / ".w.old")                      # killed between the renames
  (tmp_path / ".w.new-x").mkdir()
  manifest = weights.update(directory, {}, "tiny", meta={"v2": 2})
  assert manifest["meta"] == {"v": 1, "v2": 2}                   # built on the old folder, put back
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]

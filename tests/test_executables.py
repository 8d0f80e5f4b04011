"""The executable cache (``program/executables.py``) and the shapes cache (``checkpoints/shape_cache.py``).

A kept executable is loaded and gives the same outputs without tracing; an entry that is truncated,
corrupt, foreign, unreadable by XLA, or in a folder or file others may write is ignored (the program is
compiled and the entry written again), and nothing is ever unpickled.
"""
import ast
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.checkpoints import shape_cache
from jaxstyle.nets import model
from jaxstyle.program import compile_cache
from jaxstyle.program import executables
from jaxstyle.program import portrait
from jaxstyle.program import runner as runner_lib
from jaxstyle.program import sharding

MESH = sharding.data_mesh(jax.local_devices())


def program(params, batch, scale):
  """A small program with the portrait program's kind of trees: a dict of params, a ``Batch``, a
  replicated traced scalar, and a dict out."""
  return {"image": jnp.tanh(batch.content * params["w"] + scale), "sum": batch.style.sum(axis=(1, 2, 3))}


def jitted():
  batch, replicated = sharding.batch_sharding(MESH), sharding.replicated(MESH)
  return jax.jit(program, in_shardings=(replicated, batch, replicated), out_shardings=batch)


ARGS = ({"w": np.full((3,), 0.5, np.float32)},
        portrait.Batch(np.linspace(0, 1, 2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3),
                       np.ones((2, 3, 3, 3), np.float32)), np.float32(0.25))
WANT = {k: np.asarray(v) for k, v in program(*ARGS).items()}


def run(directory, identity="test-program"):
  cached = executables.Cached(jitted(), identity, MESH, directory)
  out = cached(*ARGS)
  for k, v in WANT.items():
    np.testing.assert_allclose(np.asarray(out[k]), v, rtol=1e-6, err_msg=k)
  return cached.events


def entry(directory: Path) -> Path:
  (path,) = directory.glob("*" + executables.SUFFIX)
  return path


def test_a_kept_executable_is_loaded_not_compiled(tmp_path):
  assert run(tmp_path) == ["compiled"]
  assert run(tmp_path) == ["loaded"]
  assert entry(tmp_path).stat().st_mode & 0o077 == 0            # 0600: the user's alone


def test_the_entry_is_a_checked_json_header_and_xla_bytes(tmp_path):
  run(tmp_path)
  data = entry(tmp_path).read_bytes()
  first, header_line, _ = data.split(b"\n", 2)
  assert first.startswith(b"jaxstyle-executable 1 ")
  header = json.loads(header_line)
  assert header["key"]["program"] == "test-program" and header["key"]["environment"]["jax"] == jax.__version__
  assert header["out_tree"] == {"dict": {"image": 0, "sum": 1}}
  assert executables.unpack(data)[0] == header


def test_no_pickle_anywhere_in_the_module():
  source = Path(executables.__file__).read_text()
  names = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))
           for alias in node.names} | {node.module for node in ast.walk(ast.parse(source))
                                       if isinstance(node, ast.ImportFrom)}
  assert not any("pickle" in str(n) or "serialize_executable" in str(n) for n in names), names


def rewrite(path: Path, data: bytes) -> None:
  path.write_bytes(data)
  path.chmod(0o600)


def forged(path: Path, change) -> bytes:
  """The entry at ``path`` with its header changed by ``change`` and a valid checksum again."""
  header, payload = executables.unpack(path.read_bytes())
  change(header)
  payload = header.pop("_payload", payload)
  return executables.pack({**header, "payload_bytes": len(payload)}, payload)


def other_jax(header):
  header["key"]["environment"]["jax"] = "0.0.1"


def other_cpu(header):
  header["key"]["environment"]["cpu"] = "0" * 64


def garbage_payload(header):
  header["_payload"] = os.urandom(4096)


def lying_outputs(header):
  header["out"] = header["out"][:1]


@pytest.mark.parametrize("damage, why", [
    (lambda d: d[: len(d) // 2], "checksum"),                                     # truncated
    (lambda d: d[:-100] + bytes(100), "checksum"),                                # corrupt payload
    (lambda d: d.replace(b'"program":"test-program"', b'"program":"test-programX"'), "checksum"),
    (lambda d: b"\x80\x04\x95 not an entry", "not an entry"),                    # e.g. a pickle
    (lambda d: b"", "not an entry"),
])
def test_truncated_or_corrupt_entries_are_ignored_and_rewritten(tmp_path, damage, why):
  run(tmp_path)
  path = entry(tmp_path)
  rewrite(path, damage(path.read_bytes()))
  events = run(tmp_path)
  assert events[0].startswith("ignored: Invalid:") and why in events[0] and events[1] == "compiled", events
  assert run(tmp_path) == ["loaded"]                        # written again, whole


@pytest.mark.parametrize("change, why", [
    (other_jax, "foreign"), (other_cpu, "foreign"),
    (garbage_payload, "ignored: "), (lying_outputs, "ignored: "),
])
def test_foreign_or_unloadable_entries_are_ignored(tmp_path, change, why):
  run(tmp_path)
  path = entry(tmp_path)
  rewrite(path, forged(path, change))
  events = run(tmp_path)
  assert why in events[0] and events[-1] == "compiled", events
  assert run(tmp_path) == ["loaded"]


def test_another_program_does_not_find_the_entry(tmp_path):
  run(tmp_path, "test-program")
  assert run(tmp_path, "another-program") == ["compiled"]
  assert len(list(tmp_path.glob("*" + executables.SUFFIX))) == 2


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX owners and modes")
def test_files_and_folders_others_may_write_are_not_read(tmp_path):
  run(tmp_path)
  path = entry(tmp_path)
  path.chmod(0o620)                                         # group-writable file: not read
  events = run(tmp_path)
  assert "writable by other users" in events[0] and events[1] == "compiled", events
  link = tmp_path / "link"
  link.mkdir()
  (link / path.name).symlink_to(path)                       # a symlink is never followed
  assert "cannot open" in run(link)[0]
  tmp_path.chmod(0o777)                                     # a folder others may write: the cache is off
  try:
    assert run(tmp_path)[0].startswith("off: ") and "writable by other users" in run(tmp_path)[0]
    assert executables.folder(tmp_path.parent, None) is not None
    assert executables.private_folder(tmp_path) is not None
  finally:
    tmp_path.chmod(0o700)


def test_an_executable_that_fails_to_run_is_dropped_and_recompiled(tmp_path, monkeypatch):
  run(tmp_path)

  class Broken:
    def __call__(self, *args):
      raise jax.errors.JaxRuntimeError("NOT_FOUND: Function fusion.1 not found")

  monkeypatch.setattr(executables, "rebuild", lambda *a: Broken())
  events = run(tmp_path)
  assert events[0] == "loaded" and events[1].startswith("dropped: NOT_FOUND") and events[2] == "compiled"


def test_the_runner_keeps_the_portrait_program(tmp_path, params):
  """The tiny portrait program through ``Runner.stylize``: a second runner loads it, same pictures."""
  cfg = model.MODEL_CONFIGS["tiny"]
  rng = np.random.default_rng(0)
  batch = portrait.Batch(rng.random((1, 24, 20, 3), np.float32), rng.random((1, 16, 16, 3), np.float32))
  outs, events = [], []
  for _ in range(2):
    r = runner_lib.Runner(jax.device_put(params, sharding.replicated(MESH)), cfg, MESH, tmp_path)
    outs.append(r.stylize(batch, portrait.Controls().as_array()))
    events += r.program().events
  assert events == ["compiled", "loaded"]
  for k in outs[0][0]:
    np.testing.assert_array_equal(outs[0][0][k], outs[1][0][k], err_msg=k)


def test_the_runner_keeps_executables_beside_the_compile_cache(tmp_path, monkeypatch):
  monkeypatch.setenv(compile_cache.VARIABLE, str(tmp_path / "xla"))
  assert executables.folder(compile_cache.cache_dir()) == tmp_path / "xla" / "executables"
  monkeypatch.setenv(compile_cache.VARIABLE, "0")
  assert compile_cache.cache_dir() is None and executables.folder(compile_cache.cache_dir()) is None


# --- the shapes cache ------------------------------------------------------------------------------------


def test_shapes_come_from_the_cache_and_equal_the_traced_ones(tmp_path, monkeypatch):
  monkeypatch.setenv(compile_cache.VARIABLE, str(tmp_path))
  want = jax.tree.map(lambda s: s.shape, model.param_shapes(model.MODEL_CONFIGS["tiny"]))
  assert jax.tree.map(lambda s: s.shape, shape_cache.shapes("tiny")) == want     # traced, written
  (path,) = (tmp_path / shape_cache.FOLDER).glob("tiny-*.json")
  monkeypatch.setattr(model, "param_shapes", lambda cfg: pytest.fail("traced again"))
  assert jax.tree.map(lambda s: s.shape, shape_cache.shapes("tiny")) == want     # read
  for bad in ("{", json.dumps({"key": "other", "shapes": {}}), json.dumps({"key": None}), "[" * 100000):
    path.write_text(bad)
    monkeypatch.undo()
    monkeypatch.setenv(compile_cache.VARIABLE, str(tmp_path))
    assert jax.tree.map(lambda s: s.shape, shape_cache.shapes("tiny")) == want   # ignored, rewritten
    assert json.loads(path.read_text())["shapes"]


def test_shapes_live_with_the_compile_cache_and_are_off_with_it(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "c"))
  for value in ("", str(tmp_path / "elsewhere"), "0", "off"):
    monkeypatch.setenv(compile_cache.VARIABLE, value)
    want = compile_cache.cache_dir()
    assert shape_cache.directory() == (None if want is None else want / shape_cache.FOLDER), value
  assert (shape_cache.COMPILE_CACHE_VARIABLE, shape_cache.OFF) == (compile_cache.VARIABLE, compile_cache.OFF)
  monkeypatch.setenv(compile_cache.VARIABLE, "0")
  shape_cache.shapes("tiny")
  assert not (tmp_path / "c").exists()


def test_a_changed_model_config_is_another_key():
  import dataclasses  # pylint: disable=g-import-not-at-top
  tiny = model.MODEL_CONFIGS["tiny"]
  assert shape_cache.key(tiny) != shape_cache.key(dataclasses.replace(tiny, transform_channels=8))
  assert sys.modules[shape_cache.__name__] is shape_cache

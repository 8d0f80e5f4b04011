"""``--engine ray``: the local engine's files, summary, exit status and resumes, from Ray Data actors.

One local Ray cluster serves the whole session (``ray_cluster``, started by the engine's own code: a
temporary folder removed at the end, its token in the environment, nothing left in the home folder).
8 small pairs (4 contents in two shape buckets × 2 styles, tiny random weights) run in this process
through ``cli.main``: the local engine's files are the reference, and the Ray engine must write exactly
those, pixel for pixel; skip what is written; fail only the pairs of a bad content; and write every
file once and whole when its actor's process dies in the middle of a task (the crash marker an actor
obeys once, ``ray_engine.CRASH_ONCE_ENV``). The runs share one compile cache, so only the first
compiles.
"""
import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infer import portrait as cli
from jaxstyle.app import ray_engine
from jaxstyle.io import image_io
from jaxstyle.io.cli import UsageError
from test_cli import write_image

pytestmark = pytest.mark.xdist_group("ray")   # one xdist worker starts the session's cluster

SIZE = 96
CONTENT_WH = [(96, 64), (64, 96)]   # two shape buckets: two programs per engine
PAIRS = 8


@pytest.fixture(scope="session")
def ray_cluster():
  """A local cluster of this machine for the session, started as ``--engine ray`` starts one; its
  workers compute as the tests' own process does (CPU, most XLA optimisations off)."""
  pytest.importorskip("ray")
  home_ray = Path.home() / ".ray"
  had_home_ray = home_ray.exists()
  engine = ray_engine.RayEngine()
  # The workers inherit the environment the cluster starts with.
  saved = {k: os.environ.get(k) for k in ("JAX_PLATFORMS", "JAX_DISABLE_MOST_OPTIMIZATIONS")}
  os.environ.update(JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  try:
    with warnings.catch_warnings():
      # JAX started before the cluster here (other tests); Ray's processes are exec'd, not forked copies.
      warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
      engine.__enter__()
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  temp = Path(engine._temp)   # pylint: disable=protected-access
  yield engine
  engine.__exit__(None, None, None)
  assert not temp.exists(), "the cluster's folder was left behind"
  assert had_home_ray or not home_ray.exists(), "Ray wrote into the home folder"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
  root = tmp_path_factory.mktemp("ray_pairs")
  for i in range(PAIRS // 2):
    write_image(root / "photos" / f"p{i}.png", CONTENT_WH[i % 2], seed=i)
  for i in range(2):
    write_image(root / "styles" / f"s{i}.png", (64, 64), seed=100 + i)
  return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("ray_xla")


def run(pairs, weights, out, cache, *extra, photos=None):
  """``cli.main`` in this process; (exit status, stdout lines, stderr lines)."""
  argv = ["--content", photos or pairs / "photos", "--style", pairs / "styles", "--output", out,
          "--size", SIZE, "--weights", weights, *extra]
  stdout, stderr = io.StringIO(), io.StringIO()
  with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    mp.setenv("JAXSTYLE_COMPILE_CACHE", str(cache))
    code = cli.main([str(a) for a in argv])
  return code, stdout.getvalue().split(), stderr.getvalue().splitlines()


def outputs(folder: Path) -> list[Path]:
  return sorted(p for p in folder.glob("*__*.png") if not p.name.startswith("."))


def pixels(folder: Path) -> dict[str, np.ndarray]:
  return {p.name: np.asarray(Image.open(p)) for p in outputs(folder)}


def summary(folder: Path) -> list[dict]:
  return [json.loads(line) for line in (folder / "run_summary.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(pairs, tiny_weights, cache, tmp_path_factory):
  """The local engine's files and summary."""
  out = tmp_path_factory.mktemp("local") / "out"
  code, written, err = run(pairs, tiny_weights, out, cache, "--engine", "local")
  assert code == 0, err
  assert err[-1].startswith(f"{PAIRS} done, 0 skipped, 0 failed of {PAIRS} pairs")
  assert len(written) == PAIRS
  return pixels(out), summary(out)


@pytest.fixture(scope="module")
def ray_out(ray_cluster, pairs, tiny_weights, cache, tmp_path_factory):
  out = tmp_path_factory.mktemp("ray") / "out"
  return out, run(pairs, tiny_weights, out, cache, "--engine", "ray")


def assert_like_reference(out, reference):
  files, records = reference
  got = pixels(out)
  assert got.keys() == files.keys()
  for name, image in got.items():
    np.testing.assert_array_equal(image, files[name], err_msg=name)
  assert sorted(os.listdir(out)) == sorted([*files, "run_summary.jsonl"])   # no temporary file left


def test_ray_writes_what_the_local_engine_writes(ray_out, reference):
  out, (code, written, err) = ray_out
  assert code == 0, err
  assert err[-1].startswith(f"{PAIRS} done, 0 skipped, 0 failed of {PAIRS} pairs"), err
  assert any(line.startswith("ray: 1 node, 1 actor") for line in err), err
  assert any(line.startswith("compiling the portrait program") for line in err), err  # the actor's lines
  assert sorted(written) == sorted(str(out / n) for n in reference[0])
  assert_like_reference(out, reference)
  records, local = summary(out), reference[1]
  assert sorted(records[0]) == sorted(local[0])                 # the same fields
  assert sorted((Path(r["output"]).name, r["status"]) for r in records) == sorted(
      (Path(r["output"]).name, r["status"]) for r in local)
  assert all(r["seconds"] > 0 for r in records)


def test_a_rerun_skips_what_is_written(ray_out, reference, pairs, tiny_weights, cache):
  out, _ = ray_out
  gone = outputs(out)[:2]
  for p in gone:
    p.unlink()
  kept = {p.name: os.stat(p) for p in outputs(out)}
  code, written, err = run(pairs, tiny_weights, out, cache, "--engine", "ray")
  assert code == 0, err
  assert err[-1].startswith(f"2 done, {PAIRS - 2} skipped, 0 failed of {PAIRS} pairs"), err
  assert sorted(written) == sorted(map(str, gone))
  for name, st in kept.items():                     # not written again
    now = os.stat(out / name)
    assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
  assert_like_reference(out, reference)
  code, written, err = run(pairs, tiny_weights, out, cache, "--engine", "ray")   # nothing to do
  assert code == 0 and written == [] and err[-1].startswith(f"0 done, {PAIRS} skipped"), err


def test_bad_contents_fail_only_their_own_pairs(ray_cluster, pairs, reference, tiny_weights, cache, tmp_path):
  photos = tmp_path / "photos"
  for p in sorted((pairs / "photos").iterdir())[:3]:
    (photos / p.name).parent.mkdir(exist_ok=True)
    (photos / p.name).write_bytes(p.read_bytes())
  whole = (pairs / "photos" / "p3.png").read_bytes()
  (photos / "p3.png").write_bytes(whole[:len(whole) // 2])      # its header reads: fails in the actor
  (photos / "notes.png").write_text("not a picture")             # fails at its header, on the driver
  out = tmp_path / "out"
  code, written, err = run(pairs, tiny_weights, out, cache, "--engine", "ray", photos=photos)
  assert code == 2
  assert err[-1].startswith("error: 4 of 10 pairs failed"), err
  assert len(written) == 6 and all(Path(w).exists() for w in written)
  records = {Path(r["output"]).name: r for r in summary(out)}
  assert len(records) == 10
  failed = {name: r["reason"] for name, r in records.items() if r["status"] == "failed"}
  assert sorted(failed) == ["notes__s0.png", "notes__s1.png", "p3__s0.png", "p3__s1.png"]
  assert all("p3.png" in failed[f"p3__s{i}.png"] and "notes.png" in failed[f"notes__s{i}.png"]
             for i in range(2))
  assert all("\n" not in reason for reason in failed.values())
  files = reference[0]
  for name, image in pixels(out).items():
    np.testing.assert_array_equal(image, files[name], err_msg=name)


def test_an_actor_killed_mid_run_loses_nothing(ray_cluster, pairs, reference, tiny_weights, cache, tmp_path,
                                               monkeypatch):
  marker = tmp_path / "crash-once"
  marker.touch()
  monkeypatch.setenv(ray_engine.CRASH_ONCE_ENV, str(marker))   # reaches the actors (JAXSTYLE_*)
  out = tmp_path / "out"
  code, written, err = run(pairs, tiny_weights, out, cache, "--engine", "ray")
  assert not marker.exists(), "no actor crashed"
  assert code == 0, err
  assert err[-1].startswith(f"{PAIRS} done, 0 skipped, 0 failed of {PAIRS} pairs"), err
  assert sorted(written) == sorted(str(out / n) for n in reference[0])   # each once
  records = summary(out)
  assert sorted(Path(r["output"]).name for r in records) == sorted(reference[0])
  # The retried task took what its killed attempt had written as done instead of writing it again.
  assert any(r["seconds"] == 0 for r in records), records
  assert all(image_io.is_complete(out / n) for n in reference[0])
  assert_like_reference(out, reference)


def test_without_ray_the_engine_is_one_line_saying_how_to_install_it(monkeypatch, capsys, tmp_path):
  monkeypatch.setitem(sys.modules, "ray", None)   # ``import ray`` fails as when it is not installed
  code = cli.main(["--content", str(tmp_path / "a.png"), "--style", str(tmp_path / "b.png"),
                   "--engine", "ray"])
  err = capsys.readouterr().err
  assert code == 2
  assert err == "error: --engine ray needs Ray Data (ray is not installed): pip install 'jaxstyle[ray]'\n"


@pytest.mark.parametrize("argv, words", [
    (["--ray-address", "auto"], "--ray-address and --ray-actors are for --engine ray"),
    (["--engine", "ray", "--num_processes", "2"], "drop the jax.distributed flags"),
])
def test_flags_of_the_other_engine_are_refused(argv, words, capsys, tmp_path):
  assert cli.main(["--content", str(tmp_path / "a.png"), "--style", str(tmp_path / "b.png"), *argv]) == 2
  err = capsys.readouterr().err
  assert words in err and err.count("\n") == 1, err


def test_actor_counts_and_resources():
  assert ray_engine.parse_actors(None) is None and ray_engine.parse_actors("auto") is None
  assert ray_engine.parse_actors("3") == (3, 3) and ray_engine.parse_actors("1-4") == (1, 4)
  for bad in ("0", "4-2", "x", "-1", "1-"):
    with pytest.raises(UsageError, match="--ray-actors"):
      ray_engine.parse_actors(bad)
  two_cpu_nodes = [{"CPU": 8.0}, {"CPU": 4.0}]
  assert ray_engine.actor_resources(two_cpu_nodes, None)[:2] == ({"num_cpus": 4}, (2, 2))
  assert ray_engine.actor_resources(two_cpu_nodes, (1, 4))[:2] == ({"num_cpus": 2}, (1, 4))
  gpus = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}]
  assert ray_engine.actor_resources(gpus, None)[:2] == ({"num_gpus": 1}, (8, 8))
  assert ray_engine.actor_resources(gpus, (2, 12))[:2] == ({"num_gpus": 1}, (2, 12))
  with pytest.raises(UsageError, match="has 8 GPUs and an actor takes one"):
    ray_engine.actor_resources(gpus, (9, 9))
  with pytest.raises(UsageError, match="no CPU or GPU"):
    ray_engine.actor_resources([{"memory": 1e9}], None)

"""Collections: shares over processes, resuming after kill -9, bad files recorded, inputs.

``python -m infer.portrait`` with tiny random weights, as subprocesses where processes matter: one
process's files are the reference; two processes on loopback (``jax.distributed``, the trainers' flags)
must write exactly those files, pixel for pixel; a two-process run killed with SIGKILL and rerun must
end with every file whole, none written twice and summaries that agree with the files. The runs share
one compile cache, so only the first compiles. A folder with bad files runs in this process.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infer import portrait as cli
from jaxstyle.app import collection
from jaxstyle.app import sources
from jaxstyle.io import image_io
from jaxstyle.io.cli import UsageError
from jaxstyle.io.image_io import ImageError
from test_cli import cli_env, write_image
from test_image_io import png_header_only
from test_input_pipeline import tiny_tfds  # pylint: disable=unused-import
from test_multiprocess import free_port

SIZE = 128
# Two shape buckets (landscape and portrait at --size 128), so each process runs two programs.
CONTENT_WH = [(160, 120), (120, 160)]


@pytest.fixture(scope="module")
def collection_inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("collection")
  for i in range(10):
    write_image(root / "photos" / f"p{i:02d}.png", CONTENT_WH[i % 2], seed=i)
  for i in range(3):
    write_image(root / "styles" / f"s{i}.png", (64, 64), seed=100 + i)
  return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("xla")


def start(inputs, weights, out, cache, processes=1, port=None):
  """The CLI as ``processes`` processes of one job (none of ``jax.distributed`` for one)."""
  argv = [sys.executable, "-m", "infer.portrait", "--content", inputs / "photos", "--style", inputs / "styles",
          "--output", out, "--size", SIZE, "--weights", weights]
  port = port or free_port()
  multi = lambda i: ["--coordinator_address", f"localhost:{port}", "--num_processes", processes,
                     "--process_id", i] if processes > 1 else []
  return [subprocess.Popen([str(a) for a in argv + multi(i)], env=cli_env(JAXSTYLE_COMPILE_CACHE=str(cache)),
                           cwd=out.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for i in range(processes)]


def finish(procs, timeout=300):
  outs = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def outputs(folder: Path) -> list[Path]:
  """The stylised files in ``folder`` (not the hidden temporary files of a write in progress)."""
  return sorted(p for p in folder.glob("*__*.png") if not p.name.startswith("."))


def pixels(folder: Path) -> dict[str, np.ndarray]:
  return {p.name: np.asarray(Image.open(p)) for p in outputs(folder)}


def summary_lines(folder: Path) -> list[dict]:
  """Every whole line of every run summary in ``folder`` (a killed run may end in half a line)."""
  lines = []
  for f in sorted(folder.glob("run_summary*.jsonl")):
    text = f.read_text()
    lines += [json.loads(l) for l in text[:text.rfind("\n") + 1].splitlines()]
  return lines


@pytest.fixture(scope="module")
def reference(collection_inputs, tiny_weights, cache, tmp_path_factory):
  """One process's files: the 30 pairs (10 photos × 3 styles)."""
  out = tmp_path_factory.mktemp("one") / "out"
  [(stdout, err)] = finish(start(collection_inputs, tiny_weights, out, cache))
  assert "30 done, 0 skipped, 0 failed of 30 pairs" in err and len(stdout.split()) == 30
  files = pixels(out)
  assert len(files) == 30 and {f.shape[:2] for f in files.values()} == {(128, 96), (96, 128)}
  return files


def test_two_processes_write_what_one_process_writes(collection_inputs, tiny_weights, cache, reference,
                                                     tmp_path):
  out = tmp_path / "out"
  logs = finish(start(collection_inputs, tiny_weights, out, cache, processes=2))
  written = [stdout.split() for stdout, _ in logs]
  assert len(written[0]) == len(written[1]) == 15 and not set(written[0]) & set(written[1])
  assert "process 1 of 2: 15 of 30 pairs" in logs[1][1]
  assert "all processes: 30 done, 0 skipped, 0 failed of 30 pairs" in logs[0][1]
  two = pixels(out)
  assert two.keys() == reference.keys()
  for name, image in two.items():
    np.testing.assert_array_equal(image, reference[name], err_msg=name)
  records = summary_lines(out)
  assert sorted(r["output"] for r in records) == sorted(str(out / n) for n in reference)
  assert {r["status"] for r in records} == {"done"}


def test_kill_one_process_then_rerun(collection_inputs, tiny_weights, cache, reference, tmp_path):
  out = tmp_path / "out"
  procs = start(collection_inputs, tiny_weights, out, cache, processes=2)
  try:
    # Process 0 runs the job's coordination service: when it dies, process 1 is stopped at once,
    # wherever it is (a kill of process 1 alone would keep process 0 going for the heartbeat timeout).
    deadline = time.monotonic() + 300
    while len(outputs(out)) < 3 and procs[0].poll() is None and time.monotonic() < deadline:
      time.sleep(0.005)
    procs[0].send_signal(signal.SIGKILL)
    procs[1].communicate(timeout=120)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[0].returncode == -signal.SIGKILL and procs[1].returncode != 0
  before = {p.name: os.stat(p) for p in outputs(out)}
  assert 3 <= len(before) < 30, "the kill came after the run"
  for record in summary_lines(out):                # a killed run's summary claims only whole files
    assert record["status"] == "done" and image_io.is_complete(record["output"])

  logs = finish(start(collection_inputs, tiny_weights, out, cache, processes=2))
  assert f"all processes: {30 - len(before)} done, {len(before)} skipped, 0 failed" in logs[0][1]
  after = pixels(out)
  assert after.keys() == reference.keys() and sorted(os.listdir(out)) == sorted(
      [*reference, "run_summary.process-0-of-2.jsonl", "run_summary.process-1-of-2.jsonl"])  # no temp file
  for name, image in after.items():
    np.testing.assert_array_equal(image, reference[name], err_msg=name)
  for name, st in before.items():                 # not written twice: the same file, untouched
    now = os.stat(out / name)
    assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
  records = summary_lines(out)
  assert sorted(r["output"] for r in records) == sorted(str(out / n) for n in reference)
  assert {Path(r["output"]).name for r in records if r["status"] == "skipped"} == set(before)
  assert {r["status"] for r in records} == {"done", "skipped"}


def test_bad_files_in_a_folder_are_recorded_and_the_rest_is_written(tiny_weights, tmp_path, capsys,
                                                                    monkeypatch):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")
  photos = tmp_path / "photos"
  write_image(photos / "good.png", (40, 48))
  write_image(tmp_path / "cut.png", (40, 48), seed=1)
  (photos / "corrupt.png").write_bytes((tmp_path / "cut.png").read_bytes()[:300])   # fails in decoding
  (photos / "bomb.png").write_bytes(png_header_only(30_000, 30_000))                # fails at the header
  (photos / "notes.jpg").write_text("not a picture")
  Image.fromarray(np.full((40, 48), np.nan, np.float32), "F").save(photos / "nan.tif")
  style = write_image(tmp_path / "style.png", (32, 32), seed=2)
  before = {p: p.read_bytes() for p in [*photos.iterdir(), style]}
  code = cli.main([str(a) for a in ["--content", photos, "--style", style, "--output", tmp_path / "out",
                                    "--weights", tiny_weights, "--size", "48"]])
  captured = capsys.readouterr()
  assert code == 2
  assert captured.err.splitlines()[-1].startswith("error: 4 of 5 pairs failed")
  assert captured.out.split() == [str(tmp_path / "out" / "good__style.png")]
  assert sorted(os.listdir(tmp_path / "out")) == ["good__style.png", collection.SUMMARY_NAME]
  records = {Path(r["input"]).name: r for r in summary_lines(tmp_path / "out")}
  assert {k: r["status"] for k, r in records.items()} == {
      "bomb.png": "failed", "corrupt.png": "failed", "good.png": "done", "nan.tif": "failed",
      "notes.jpg": "failed"}
  for name, words in (("bomb.png", "exceeds"), ("corrupt.png", "truncated"), ("nan.tif", "NaN"),
                      ("notes.jpg", "not an image")):
    assert words in records[name]["reason"] and "\n" not in records[name]["reason"], records[name]
  assert all(r["seconds"] >= 0 and r["output"].endswith(".png") for r in records.values())
  assert {p: p.read_bytes() for p in before} == before                    # nothing else lost


# --- pure pieces: shares, summaries, inputs (nothing compiles) -----------------------------------


def test_shares_are_contiguous_balanced_and_cover_every_pair():
  pairs = list(range(31))
  for processes in (1, 2, 3, 8, 40):
    shares = [collection.share(pairs, i, processes) for i in range(processes)]
    assert [x for s in shares for x in s] == pairs
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
  assert collection.summary_path(collection.AUTO, "out", 1, 0, 1) is None   # one pair: no summary
  assert collection.summary_path(collection.AUTO, "out", 2, 0, 1) == Path("out/run_summary.jsonl")
  assert collection.summary_path("s.jsonl", "out", 1, 1, 2) == Path("s.process-1-of-2.jsonl")


def test_lists_of_paths(tmp_path):
  a = write_image(tmp_path / "a.png", (20, 20))
  folder = tmp_path / "more"
  write_image(folder / "b.png", (20, 20))
  (tmp_path / "lists").mkdir()
  listing = tmp_path / "lists" / "photos.txt"
  listing.write_text(f"# holiday\n../a.png\n\n{folder}\n../missing.jpg\n{a}\n")
  items = sources.expand_inputs([listing, a], "--content")
  assert [p.resolve() for p in items] == [a, folder / "b.png", tmp_path / "missing.jpg"]
  with pytest.raises(ImageError, match="missing.jpg: no such file"):   # an item that fails when read
    sources.read(items[2], None)
  (tmp_path / "empty.txt").write_text("# nothing\n")
  with pytest.raises(UsageError, match="names no images"):
    sources.expand_inputs([tmp_path / "empty.txt"], "--content")
  (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
  with pytest.raises(UsageError, match="not a readable text file"):
    sources.expand_inputs([tmp_path / "bin.txt"], "--content")


def test_tfds_datasets_are_inputs(tiny_tfds):
  name, data_dir = tiny_tfds
  records = sources.expand_inputs([f"tfds:{name}"], "--content", data_dir)
  assert len(records) == 6 and records[0].name == f"tfds:{name}:train#0"
  assert records[3].stem == f"{name}_train_000003"
  hw = sources.probe(records[0], 24)
  image = sources.read(records[0], 24)
  assert image.shape == (*hw, 3) and max(hw) == 24 and image.dtype == np.float32
  assert len(sources.expand_inputs([f"tfds:{name}:train[:2]"], "--content", data_dir)) == 2
  with pytest.raises(UsageError, match="cannot open the dataset"):
    sources.expand_inputs(["tfds:no_such_dataset_here"], "--content", data_dir)


def test_a_video_takes_its_styles_from_a_tfds_dataset(tmp_path, tiny_tfds, tiny_weights, monkeypatch):
  """The video path reads styles through the same sources as images (records have no file to compare)."""
  from clips import write_clip  # pylint: disable=g-import-not-at-top
  from jaxstyle.app import clip as clip_lib  # pylint: disable=g-import-not-at-top
  name, data_dir = tiny_tfds
  seen = []
  monkeypatch.setattr(clip_lib, "stylize_clip",      # the frames themselves: tests/test_stylize_video.py
                      lambda src, dst, stylizer, *a, **k: seen.append((dst.name, stylizer.style.shape)))
  clip = write_clip(tmp_path / "clip.mp4", frames=2)
  code = cli.main(["--content", str(clip), "--style", f"tfds:{name}:train[:2]", "--tfds-data-dir", data_dir,
                   "--output", str(tmp_path / "out"), "--size", "32", "--weights", str(tiny_weights)])
  assert code == 0
  assert [n for n, _ in seen] == [f"clip__{name}_train_2_00000{i}.mp4" for i in range(2)]   # train[:2]
  assert all(max(shape[:2]) == 32 for _, shape in seen)

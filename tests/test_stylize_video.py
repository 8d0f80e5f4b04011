"""Stylising video through the CLI: clips are generated here with PyAV (``clips.py``, no binary fixtures),
stylised with tiny random weights and read back. One compile (the end-to-end test); the rest is host-side."""
import os

import av
import numpy as np
import pytest

from clips import read_clip, write_clip
from infer import portrait as cli
from jaxstyle.app import clip as clip_lib
from jaxstyle.io import video
from jaxstyle.program.runner import Runner


@pytest.fixture
def style(tmp_path):
  from PIL import Image
  path = tmp_path / "style.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
  return path


def test_twelve_frames_in_twelve_out_same_rate_with_audio(tmp_path, tiny_weights, style, monkeypatch, capsys):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")
  clip = write_clip(tmp_path / "clip.mp4", audio_seconds=0.5)
  in_frames, in_rate, in_audio = read_clip(clip)
  out = tmp_path / "out" / "styled.mp4"
  code = cli.main([str(a) for a in ["--content", clip, "--style", style, "--output", out, "--size", "0",
                                    "--weights", tiny_weights]])
  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert captured.out.split() == [str(out)]
  assert "12 frames in" in captured.err and "blend-weight flicker" in captured.err
  frames, rate, audio = read_clip(out)
  assert len(in_frames) == 12 and len(frames) == 12
  assert rate == in_rate == 24
  assert frames[0].shape == (40, 48, 3)
  assert [bytes(p) for p in audio] == [bytes(p) for p in in_audio]     # audio copied, not re-encoded
  assert np.std(np.stack(frames).astype(float)) > 1                      # not a blank clip
  assert sorted(os.listdir(tmp_path / "out")) == ["styled.mp4"]          # no temporary file left


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video"), "not a readable video"),
    (lambda p: p.write_bytes(b""), "not a readable video"),
    (lambda p: None, "no such file"),
])
def test_bad_video_one_error_line_exit_2_nothing_written(tmp_path, tiny_weights, style, capsys, make, words):
  bad = tmp_path / "bad.mp4"
  make(bad)
  out = tmp_path / "out"
  code = cli.main(["--content", str(bad), "--style", str(style), "--output", str(out / "o.mp4"),
                   "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  assert words in err
  assert not out.exists() or not os.listdir(out)


def test_truncated_clip_leaves_no_partial_file(tmp_path, tiny_weights, style, capsys, monkeypatch):
  """A clip cut mid-stream decodes its first frame, then fails while stylising: the temp file goes."""
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")
  clip = write_clip(tmp_path / "clip.mp4", frames=4)
  out = tmp_path / "out"
  out.mkdir()
  monkeypatch.setattr(video, "decode_frames", lambda *a, **k: (_ for _ in ()).throw(av.InvalidDataError(
      1094995529, "Invalid data found when processing input")))
  code = cli.main(["--content", str(clip), "--style", str(style), "--output", str(out / "o.mp4"),
                   "--size", "0", "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  assert code == 2 and err.splitlines()[-1].startswith("error: ") and err.count("error") == 1, err
  assert "Invalid data" in err and "Errno" not in err
  assert os.listdir(out) == []


def test_unwritable_folder_and_non_finite_frames_are_refused(tmp_path, tiny_weights, style, capsys,
                                                              monkeypatch):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")
  clip = write_clip(tmp_path / "clip.mp4", frames=2)
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  code = cli.main(["--content", str(clip), "--style", str(style), "--output", str(blocker / "o.mp4"),
                   "--size", "0", "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: cannot write into") and err.count("\n") == 1, err
  # A NaN result (broken weights) ends the run with one line and leaves no file.
  real = Runner.stylize
  monkeypatch.setattr(Runner, "stylize", lambda *a, **kw: [{k: v * np.nan for k, v in out.items()}
                                                           for out in real(*a, **kw)])
  out = tmp_path / "out"
  out.mkdir()
  code = cli.main(["--content", str(clip), "--style", str(style), "--output", str(out / "o.mp4"),
                   "--size", "0", "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  lines = err.splitlines()
  assert code == 2 and lines[-1].startswith("error: video frames") and "NaN or infinite" in lines[-1], err
  assert sum(l.startswith("error") for l in lines) == 1
  assert os.listdir(out) == []


def test_video_refuses_image_only_options(tmp_path, tiny_weights, style, capsys):
  clip = write_clip(tmp_path / "clip.mp4", frames=2)
  code = cli.main(["--content", str(clip), "--style", str(style), "--sheet", "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  assert code == 2 and "for images, not video" in err


def test_webm_of_a_clip_with_aac_audio_is_refused_before_any_work(tmp_path, tiny_weights, style, capsys,
                                                                   monkeypatch):
  clip = write_clip(tmp_path / "clip.mp4", frames=2, audio_seconds=0.1)
  monkeypatch.setattr(clip_lib, "load_runner", lambda *a: pytest.fail("weights loaded"))
  code = cli.main(["--content", str(clip), "--style", str(style), "--output", str(tmp_path / "o.webm"),
                   "--weights", str(tiny_weights)])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  assert "cannot copy the aac audio" in err and not (tmp_path / "o.webm").exists()

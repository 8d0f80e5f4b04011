"""Video in and out: clips are generated here with PyAV (no binary fixtures), stylised with tiny random
weights through the CLI, and read back with PyAV. One compile (the end-to-end test); the rest is host-side."""
import fractions
import os

import av
import jax
import numpy as np
import pytest

from infer import portrait as cli
from jaxstyle import model, temporal, video, weights

CFG = model.MODEL_CONFIGS["tiny"]


def write_clip(path, frames=12, rate=24, wh=(48, 40), audio_seconds=0.0):
  """An H.264 clip of a bright square sliding over a dark field, with a 440 Hz AAC tone if asked."""
  with av.open(str(path), "w") as out:
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = wh[0], wh[1], "yuv420p"
    sound = out.add_stream("aac", rate=22050) if audio_seconds else None
    for i in range(frames):
      img = np.full((wh[1], wh[0], 3), 40, np.uint8)
      img[8:32, 4 + 2 * i:20 + 2 * i] = 220
      out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    out.mux(stream.encode(None))
    if sound:
      tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(22050 * audio_seconds)) / 22050)).astype(np.float32)
      for start in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024].copy(), format="fltp", layout="mono")
        frame.sample_rate = 22050
        out.mux(sound.encode(frame))
      out.mux(sound.encode(None))
  return path


def read_clip(path):
  with av.open(str(path)) as c:
    v = c.streams.video[0]
    frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
  with av.open(str(path)) as c:
    audio = [p for p in c.demux(c.streams.audio[0]) if p.size] if c.streams.audio else []
    return frames, c.streams.video[0].average_rate, audio


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
  params = jax.device_get(jax.jit(lambda k: model.init_params(CFG, k, hw=(32, 32)))(jax.random.key(0)))
  directory = tmp_path_factory.mktemp("weights")
  weights.save(directory, params, "tiny", include_encoder=True)
  return directory


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
  assert "12 frames in" in captured.err and "mask flicker" in captured.err
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
  real = video.stylize_files.stylize_batch
  monkeypatch.setattr(video.stylize_files, "stylize_batch",
                      lambda *a: {k: v * np.nan for k, v in real(*a).items()})
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


# --- temporal smoothing -------------------------------------------------------------------------------


def test_smoothing_keeps_count_constants_and_has_no_lag():
  ramp = [np.full((2, 2), t, np.float32) for t in range(10)]
  out = list(temporal.smooth_masks(iter(ramp)))
  assert len(out) == 10
  # A centred symmetric window maps a linear ramp onto itself away from the ends (no lag).
  np.testing.assert_allclose([o[0, 0] for o in out[2:8]], range(2, 8), atol=1e-5)
  const = list(temporal.smooth_masks(iter([np.full((3,), 0.7)] * 3)))
  np.testing.assert_allclose(np.stack(const), 0.7)
  assert len(list(temporal.smooth_masks(iter([np.zeros(1)])))) == 1


def test_smoothing_reduces_flicker_of_a_noisy_mask():
  rng = np.random.default_rng(0)
  truth = np.zeros((16, 16))
  truth[4:12, 4:12] = 1
  noisy = [np.clip(truth + 0.2 * rng.normal(size=truth.shape), 0, 1) for _ in range(30)]
  raw, smooth = temporal.Flicker(), temporal.Flicker()
  for m in noisy:
    raw.add(m)
  for m in temporal.smooth_masks(iter(noisy)):
    smooth.add(m)
  assert smooth.value < 0.6 * raw.value


def test_frame_hw_is_even_and_keeps_aspect():
  assert video.frame_hw((720, 1280), 512) == (288, 512)
  assert video.frame_hw((41, 47), 0) == (40, 46)
  assert video.frame_hw((481, 641), 100) == (74, 100)
  assert video.is_video("a/b.MP4") and not video.is_video("a/b.png")


def test_pan_clip_makes_a_moving_clip(tmp_path):
  image = np.random.default_rng(0).random((60, 80, 3)).astype(np.float32)
  path = video.pan_clip(image, tmp_path / "pan.mp4", frames=5, hw=(32, 48), rate=10)
  frames, rate, _ = read_clip(path)
  assert len(frames) == 5 and rate == fractions.Fraction(10) and frames[0].shape == (32, 48, 3)
  assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 5   # it pans

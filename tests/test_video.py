"""Video files in and out: frame sizes, the demo's pan clip, and transcoding with the audio copied."""
import fractions

import numpy as np

from clips import read_clip, write_clip
from jaxstyle.io import video


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


def test_transcode_passes_every_frame_through_the_transform_and_copies_audio(tmp_path):
  src = write_clip(tmp_path / "in.mp4", frames=7, rate=12, audio_seconds=0.5)
  info = video.probe(src)
  seen = []

  def invert(frames):
    for f in frames:
      seen.append(f)
      yield 1 - f

  n = video.transcode(src, tmp_path / "out.mkv", info, (40, 48), invert, progress=False)
  frames, rate, audio = read_clip(tmp_path / "out.mkv")
  original, _, original_audio = read_clip(src)
  assert n == len(seen) == len(frames) == 7 and rate == fractions.Fraction(12)
  assert all(f.shape == (40, 48, 3) for f in seen) and frames[0].shape == (40, 48, 3)
  # Inverted, up to H.264's loss: the bright square becomes the dark one.
  assert np.abs((255 - original[3].astype(float)) - frames[3].astype(float)).mean() < 12
  assert len(audio) == len(original_audio) > 0

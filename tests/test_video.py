"""Video files in and out: frame sizes, the demo's pan clip, and transcoding with the audio copied."""
import fractions
from pathlib import Path

import numpy as np
import pytest

from clips import delay_clip, read_clip, start_seconds, write_clip
from jaxstyle.io import video


def test_frame_hw_is_even_and_keeps_aspect():
  assert video.frame_hw((720, 1280), 512, "c.mp4") == (288, 512)
  assert video.frame_hw((41, 47), 0, "c.mp4") == (40, 46)
  assert video.frame_hw((481, 641), 100, "c.mp4") == (74, 100)
  assert video.is_video("a/b.MP4") and not video.is_video("a/b.png")


def test_frame_hw_refuses_frames_resized_below_the_minimum():
  assert video.frame_hw((40, 48), 20, "c.mp4") == (16, 20)
  with pytest.raises(video.VideoError, match=r"c.mp4: 48x40 frames .* 16x12, too small \(at least 16 px"):
    video.frame_hw((40, 48), 16, "c.mp4")


@pytest.mark.parametrize("rotation, turns", [(0, 0), (90, 1), (180, 2), (-90, 3), (-135, 2), (44, 0)])
def test_quarter_turns_from_the_display_rotation(rotation, turns):
  assert video.quarter_turns(rotation) == turns


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


def test_a_phone_clip_stored_on_its_side_is_read_and_written_upright(tmp_path):
  upright = write_clip(tmp_path / "upright.mp4", frames=3)
  phone = write_clip(tmp_path / "phone.mp4", frames=3, rotation=-90)   # stored 40 wide, 48 high
  info = video.probe(phone)
  assert info.hw == (40, 48) and info.turns == 3
  video.transcode(phone, tmp_path / "out.mp4", info, info.hw, lambda frames: frames, progress=False)
  frames, _, _ = read_clip(tmp_path / "out.mp4")
  expected, _, _ = read_clip(upright)
  assert frames[0].shape == (40, 48, 3)
  assert np.abs(frames[2].astype(float) - expected[2].astype(float)).mean() < 6   # H.264's loss only
  assert np.abs(frames[2].astype(float) - expected[2][::-1, ::-1].astype(float)).mean() > 30


def test_audio_stays_with_the_video_when_the_input_starts_late(tmp_path):
  src = delay_clip(write_clip(tmp_path / "clip.mp4", frames=6, audio_seconds=0.25), tmp_path / "late.mkv", 2)
  assert start_seconds(src, "video") == start_seconds(src, "audio") == 2
  for suffix in (".mp4", ".mkv"):
    dst = tmp_path / f"out{suffix}"
    video.transcode(src, dst, video.probe(src), (40, 48), lambda frames: frames, progress=False)
    assert start_seconds(dst, "video") == start_seconds(dst, "audio") == 0


def test_check_output_refuses_audio_the_container_cannot_take(tmp_path):
  with_aac = write_clip(tmp_path / "aac.mp4", frames=2, audio_seconds=0.1)
  silent = write_clip(tmp_path / "silent.mp4", frames=2)
  with pytest.raises(video.VideoError, match=r"out.webm: cannot copy the aac audio of .*aac.mp4.*\.mkv"):
    video.check_output(with_aac, Path("out.webm"))
  video.check_output(with_aac, Path("out.mkv"))
  video.check_output(silent, Path("out.webm"))

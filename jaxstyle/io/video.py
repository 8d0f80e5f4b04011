"""Video files in and out (PyAV): probing, decoding frames, encoding frames with the audio copied.

    decode (PyAV) ─ resize ─ frames ─ ``transform`` (the caller's: e.g. stylise) ─ encode (PyAV)
    audio packets ───────────────────────────────────────────────── copied as they are

- ``transcode`` writes a clip with the input's frame count and frame rate (constant: the stream's
  average rate), every frame passed through the caller's ``transform``; audio is remuxed without
  re-encoding, moved by the video's start time so that both start together as they did. The output
  goes through a temporary file beside the target, so no partial file is left.
- Frames are turned upright by the stream's display matrix (a phone's portrait clip is stored on its
  side), as images are by their EXIF orientation; the output is written upright.
- Anything wrong with a video (unreadable, no video stream, no frame rate, frames too small, audio the
  output container cannot take: ``check_output``, before any work) is a ``VideoError``: one line naming
  the file.
- ``python -m jaxstyle.io.video pan IMAGE OUT.mp4``: a short clip panning over a still image (the demo's
  input).
"""
from __future__ import annotations

import dataclasses
import fractions
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError


def _lazy(name: str):
  """Module ``name``, executed on its first attribute (``importlib.util.LazyLoader``): PyAV costs
  0.1–0.2 s of imports, which a run of images, whose inputs are only told apart by suffix, never needs."""
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec(name)
  loader = importlib.util.LazyLoader(spec.loader)
  spec.loader = loader
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  loader.exec_module(module)
  return module


av = _lazy("av")

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                            ".wmv", ".flv", ".3gp", ".ogv"})
# Output container → video codec. H.264 (libx264 inside PyAV's wheel) where the container takes it.
OUTPUT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                 ".webm": "libvpx-vp9", ".avi": "mpeg4"}


class VideoError(ImageError):
  """A video file that cannot be read or written; the message is one line naming the file."""


def is_video(path: str | os.PathLike) -> bool:
  return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _one_line(e: BaseException) -> str:
  """The message of ``e`` on one line (FFmpeg's text without its "[Errno N]" prefix)."""
  text = getattr(e, "strerror", None) or str(e)
  return " ".join(text.split()) or type(e).__name__


def frame_hw(hw: tuple[int, int], size: int, path: str | os.PathLike) -> tuple[int, int]:
  """Output frame size: longest side ``size`` (0: as is), sides rounded down to even for 4:2:0.

  Refuses (``VideoError``) frames that would come out smaller than ``image_io.MIN_SIDE``, as images are.
  """
  h, w = image_io.longest_side_hw(hw, size) if size else hw
  out = (h - h % 2, w - w % 2)
  if min(out) < image_io.MIN_SIDE:
    raise VideoError(f"{path}: {hw[1]}x{hw[0]} frames resized to a longest side of {size} are "
                     f"{out[1]}x{out[0]}, too small (at least {image_io.MIN_SIDE} px a side)")
  return out


# --- reading and writing -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
  hw: tuple[int, int]           # frame size upright (as displayed)
  rate: fractions.Fraction      # frames per second
  frames: int                   # from the header; 0 when the container does not say
  audio: bool
  turns: int = 0                # quarter turns counterclockwise from the stored frames to upright


def quarter_turns(rotation: float | None) -> int:
  """Quarter turns (counterclockwise, as ``np.rot90``) that show a frame upright, from its display
  matrix's rotation (FFmpeg's ``av_display_rotation_get``: degrees counterclockwise; a phone's portrait
  clip is −90). Rotations between quarter turns are rounded to the nearest."""
  return round((rotation or 0) / 90) % 4


def probe(path: Path) -> Probe:
  """Opens ``path`` and decodes its first frame, so a bad file fails before any model is loaded."""
  if not path.is_file():
    raise VideoError(f"{path}: no such file")
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise VideoError(f"{path}: has no video stream")
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate
      if not rate:
        raise VideoError(f"{path}: the video stream has no frame rate")
      first = next(container.decode(stream), None)
      if first is None:
        raise VideoError(f"{path}: the video stream has no frames")
      turns = quarter_turns(first.rotation)
      hw = (first.height, first.width) if turns % 2 == 0 else (first.width, first.height)
      if hw[0] * hw[1] > image_io.MAX_PIXELS:
        raise VideoError(f"{path}: {hw[1]}x{hw[0]} frames exceed the limit of "
                         f"{image_io.MAX_PIXELS / 1e6:g} MP")
      if min(hw) < image_io.MIN_SIDE:
        raise VideoError(f"{path}: {hw[1]}x{hw[0]} frames are too small "
                         f"(at least {image_io.MIN_SIDE} px a side)")
      return Probe(hw, fractions.Fraction(rate), stream.frames, bool(container.streams.audio), turns)
  except VideoError:
    raise
  except (av.FFmpegError, ValueError, OSError, StopIteration) as e:
    raise VideoError(f"{path}: not a readable video ({_one_line(e)})") from None


def decode_frames(container, hw: tuple[int, int], audio_sink: Callable | None,
                  turns: int = 0) -> Iterator[np.ndarray]:
  """RGB float32 frames of the first video stream, turned upright by ``turns`` (``Probe.turns``) and
  resized to ``hw`` (upright); audio packets go to ``audio_sink`` as they are demuxed (so they
  interleave with the video written meanwhile)."""
  video = container.streams.video[0]
  streams = [video] + ([container.streams.audio[0]] if audio_sink and container.streams.audio else [])
  stored = hw if turns % 2 == 0 else hw[::-1]
  for packet in container.demux(*streams):
    if packet.stream is video:
      for frame in packet.decode():
        rgb = frame.to_ndarray(format="rgb24", width=stored[1], height=stored[0], interpolation="LANCZOS")
        yield np.rot90(rgb, turns).astype(np.float32, order="C") / 255.0
    elif packet.dts is not None:   # a flush packet carries no data
      audio_sink(packet)


def batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
  batch: list[np.ndarray] = []
  for frame in frames:
    batch.append(frame)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def check_output(src: Path, dst: Path) -> None:
  """Refuses (``VideoError``) a ``dst`` whose container cannot take ``src``'s audio as it is (WebM takes
  Opus and Vorbis, not a phone's AAC), before any model is loaded or frame decoded."""
  try:
    with av.open(str(src)) as inp:
      if not inp.streams.audio:
        return
      audio = inp.streams.audio[0]
      with tempfile.TemporaryDirectory() as tmp, av.open(os.path.join(tmp, "check" + dst.suffix), "w") as out:
        try:
          out.add_stream_from_template(audio)
        except (av.FFmpegError, ValueError) as e:
          raise VideoError(f"{dst}: cannot copy the {audio.codec_context.name} audio of {src} into this "
                           f"container ({_one_line(e)}); choose another, such as .mkv") from None
  except (av.FFmpegError, OSError) as e:
    raise VideoError(f"{src}: not a readable video ({_one_line(e)})") from None


def transcode(src: Path, dst: Path, info: Probe, hw: tuple[int, int],
              transform: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]], *,
              progress: bool | None = None, on_frame: Callable[[int], None] | None = None) -> int:
  """Writes ``dst`` (codec from its suffix): ``transform`` of ``src``'s frames (RGB float32 in [0, 1] at
  ``hw``, in order), at ``src``'s rate, audio copied. Returns the number of frames written.
  ``on_frame(n)`` is told each frame written (a page's progress); whatever it raises stops the clip
  and leaves no file.

  ``transform`` takes the iterator of decoded frames and yields one output frame per input frame, so it
  may batch them; audio packets are muxed as they are demuxed, interleaved with the video.
  """
  codec = OUTPUT_CODECS.get(dst.suffix.lower())
  written = 0
  try:
    with image_io.atomic_path(dst) as tmp, av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
      video = out.add_stream(codec, rate=info.rate)
      video.width, video.height, video.pix_fmt = hw[1], hw[0], "yuv420p"
      audio_in = inp.streams.audio[0] if inp.streams.audio else None
      audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
      # Video frames are numbered from 0; the audio moves by the video's start time with them.
      video_in = inp.streams.video[0]
      start = (video_in.start_time or 0) * (video_in.time_base or 0)
      shift = round(start / audio_in.time_base) if audio_in is not None else 0

      def copy_audio(packet):
        packet.stream = audio_out
        if packet.pts is not None:
          packet.pts -= shift
        packet.dts -= shift
        out.mux(packet)

      with tqdm(total=info.frames or None, unit="frame", disable=None if progress is None else not progress,
                desc=dst.name) as bar:
        for image in transform(decode_frames(inp, hw, copy_audio if audio_out else None, info.turns)):
          frame = av.VideoFrame.from_ndarray(to_uint8(image), format="rgb24")
          frame.pts = written
          frame.time_base = 1 / info.rate
          out.mux(video.encode(frame))
          written += 1
          bar.update(1)
          if on_frame is not None:
            on_frame(written)
      out.mux(video.encode(None))
  except (av.FFmpegError, ValueError, OSError) as e:
    raise VideoError(f"{src} → {dst}: {_one_line(e)}") from None
  return written


# --- clips for the demo ------------------------------------------------------------------------------


def pan_clip(image: np.ndarray, path: str | os.PathLike, frames: int = 12, hw: tuple[int, int] = (128, 96),
             rate: int = 12) -> Path:
  """Writes an H.264 clip of ``frames`` views of ``hw`` panning diagonally across ``image`` (RGB in
  [0, 1], larger than ``hw``): a moving picture made from a still one, for the demo."""
  path = Path(path)
  h, w = image.shape[:2]
  scale = 1.25 * max(hw[0] / h, hw[1] / w)   # room to move: the window covers 80% of the image
  small = image_io._resize(image, (math.ceil(h * scale), math.ceil(w * scale)), image_io.RESAMPLE_IMAGE)
  ys = np.linspace(0, small.shape[0] - hw[0], frames).round().astype(int)
  xs = np.linspace(0, small.shape[1] - hw[1], frames).round().astype(int)
  with image_io.atomic_path(path) as tmp, av.open(str(tmp), "w") as out:
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = hw[1], hw[0], "yuv420p"
    for y, x in zip(ys, xs):
      out.mux(stream.encode(av.VideoFrame.from_ndarray(to_uint8(small[y:y + hw[0], x:x + hw[1]]),
                                                       format="rgb24")))
    out.mux(stream.encode(None))
  return path


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m jaxstyle.io.video pan IMAGE OUT.mp4 [--frames N --width W --height H --rate R]``."""
  import argparse
  p = argparse.ArgumentParser(prog="python -m jaxstyle.io.video")
  sub = p.add_subparsers(dest="command", required=True)
  pan = sub.add_parser("pan", help="a short clip panning over a still image (the demo's input)")
  pan.add_argument("image")
  pan.add_argument("output")
  pan.add_argument("--frames", type=int, default=12)
  pan.add_argument("--width", type=int, default=96)
  pan.add_argument("--height", type=int, default=128)
  pan.add_argument("--rate", type=int, default=12)
  args = p.parse_args(argv)
  image = image_io.load_image(args.image)
  print(pan_clip(image, args.output, args.frames, (args.height, args.width), args.rate))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""Video in, video out: ``--content clip.mp4 --output out.mp4`` through the same portrait program.

    decode (PyAV) ─ resize ─ batches of frames ─ program (sharded over devices) ─ smooth mask over time
                                                                                 ─ blend ─ encode (PyAV)
    audio packets ─────────────────────────────────────────────────────────────────── copied as they are

- Frames are resized to ``--size`` on their longer side (sides rounded down to even: H.264's 4:2:0 needs
  it), the style to the frames' longer side (also with ``--size 0``), and stylised in batches of the device count (or ``--batch-size``), the last batch padded by
  repeating its last frame, so one clip compiles one program. Every frame has one shape, so no shape
  bucket is needed: frames run at their exact size.
- The output has the input's frame count and frame rate (constant: the stream's average rate); audio is
  remuxed without re-encoding.
- Portrait clips: the program's per-frame masks are smoothed over time and the two transfers blended
  again on the host with the smoothed mask (``jaxstyle.temporal``); mask flicker is logged before and
  after.
- Anything wrong with a video (unreadable, no video stream, no frame rate, a codec the container cannot
  take) is a ``VideoError``: one line, exit 2, and the output is written to a temporary file beside the
  target that is removed, so no partial file is left.
"""
from __future__ import annotations

import dataclasses
import fractions
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import av
import jax
import numpy as np
from tqdm import tqdm

from jaxstyle import image_io
from jaxstyle import model as model_lib
from jaxstyle import portrait
from jaxstyle import sharding
from jaxstyle import stylize_files
from jaxstyle import temporal
from jaxstyle.image_io import ImageError

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


def frame_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
  """Output frame size: longest side ``size`` (0: as is), sides rounded down to even for 4:2:0."""
  h, w = image_io.longest_side_hw(hw, size) if size else hw
  return h - h % 2, w - w % 2


# --- reading and writing -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
  hw: tuple[int, int]           # decoded frame size
  rate: fractions.Fraction      # frames per second
  frames: int                   # from the header; 0 when the container does not say
  audio: bool


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
      hw = (first.height, first.width)
      if hw[0] * hw[1] > image_io.MAX_PIXELS:
        raise VideoError(f"{path}: {hw[1]}x{hw[0]} frames exceed the limit of "
                         f"{image_io.MAX_PIXELS / 1e6:g} MP")
      if min(hw) < image_io.MIN_SIDE:
        raise VideoError(f"{path}: {hw[1]}x{hw[0]} frames are too small "
                         f"(at least {image_io.MIN_SIDE} px a side)")
      return Probe(hw, fractions.Fraction(rate), stream.frames, bool(container.streams.audio))
  except VideoError:
    raise
  except (av.FFmpegError, ValueError, OSError, StopIteration) as e:
    raise VideoError(f"{path}: not a readable video ({_one_line(e)})") from None


def decode_frames(container, hw: tuple[int, int], audio_sink: Callable | None) -> Iterator[np.ndarray]:
  """RGB float32 frames of the first video stream, resized to ``hw``; audio packets go to
  ``audio_sink`` as they are demuxed (so they interleave with the video written meanwhile)."""
  video = container.streams.video[0]
  streams = [video] + ([container.streams.audio[0]] if audio_sink and container.streams.audio else [])
  for packet in container.demux(*streams):
    if packet.stream is video:
      for frame in packet.decode():
        rgb = frame.to_ndarray(format="rgb24", width=hw[1], height=hw[0], interpolation="LANCZOS")
        yield rgb.astype(np.float32) / 255.0
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


# --- the run -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stylizer:
  """Runs the program on a list of frames; returns its outputs per frame."""
  mode: str
  program: Callable
  mesh: jax.sharding.Mesh
  params: model_lib.Params
  style: np.ndarray
  controls: np.ndarray
  batch: int

  @property
  def portrait(self) -> bool:
    return self.mode == "portrait"

  def __call__(self, frames: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    x = stylize_files.pad_batch(np.stack(frames), self.batch)
    styles = np.broadcast_to(self.style, (self.batch, *self.style.shape))
    out = stylize_files.stylize_batch(self.program, self.mesh, self.params, x, styles, self.controls)
    out = {k: np.asarray(v)[:len(frames)] for k, v in out.items()}
    stylize_files.check_finite(out, Path("video frames"))
    return [{k: v[i] for k, v in out.items()} for i in range(len(frames))]


def stylize_clip(src: Path, dst: Path, stylizer: Stylizer, info: Probe, hw: tuple[int, int], *,
                 log: Callable[[str], None], progress: bool | None) -> dict[str, float]:
  """Writes ``dst``: every frame of ``src`` stylised, same rate, audio copied. Returns statistics."""
  codec = OUTPUT_CODECS.get(dst.suffix.lower())
  raw, smooth = temporal.Flicker(), temporal.Flicker()
  frames_done, start, first_batch = 0, time.perf_counter(), None
  try:
    with image_io.atomic_path(dst) as tmp, av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
      video = out.add_stream(codec, rate=info.rate)
      video.width, video.height, video.pix_fmt = hw[1], hw[0], "yuv420p"
      audio_in = inp.streams.audio[0] if inp.streams.audio else None
      audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None

      def copy_audio(packet):
        packet.stream = audio_out
        out.mux(packet)

      def results():
        nonlocal first_batch
        for batch in batches(decode_frames(inp, hw, copy_audio if audio_out else None), stylizer.batch):
          yield from stylizer(batch)
          if first_batch is None:
            first_batch = (time.perf_counter(), len(batch))

      with tqdm(total=info.frames or None, unit="frame", disable=None if progress is None else not progress,
                desc=dst.name) as bar:
        images = (temporal.blend_smoothed(results(), raw, smooth) if stylizer.portrait
                  else (r["image"] for r in results()))
        for image in images:
          frame = av.VideoFrame.from_ndarray(to_uint8(image), format="rgb24")
          frame.pts = frames_done
          frame.time_base = 1 / info.rate
          out.mux(video.encode(frame))
          frames_done += 1
          bar.update(1)
      out.mux(video.encode(None))
  except (av.FFmpegError, ValueError, OSError) as e:
    raise VideoError(f"{src} → {dst}: {_one_line(e)}") from None
  end = time.perf_counter()
  steady = (frames_done - first_batch[1]) / (end - first_batch[0]) if first_batch and \
      frames_done > first_batch[1] else float("nan")
  stats = {"frames": frames_done, "seconds": end - start, "frames_per_s": steady,
           "flicker_raw": raw.value, "flicker_smoothed": smooth.value}
  message = (f"{dst}: {frames_done} frames in {end - start:.1f} s; {steady:.2f} frames/s after the first "
             "batch (which compiles)")
  if raw.count:
    message += f"; mask flicker (mean |Δmask| between frames) {raw.value:.4f} → {smooth.value:.4f} smoothed"
  log(message)
  return stats


def output_path(output: str, content: Path, style: Path, n_styles: int) -> Path:
  """``output`` itself when it names one video file for one style, else ``output/CONTENT__STYLE.mp4``."""
  out = Path(output)
  if out.suffix.lower() in VIDEO_SUFFIXES and not out.is_dir():
    if n_styles > 1:
      raise stylize_files.UsageError(f"--output {out} names one video but there are {n_styles} styles: give a folder")
    path = out
  else:
    path = out / f"{content.stem}__{style.stem}.mp4"
  if path.suffix.lower() not in OUTPUT_CODECS:
    raise stylize_files.UsageError(f"--output {path}: videos are written as {', '.join(sorted(OUTPUT_CODECS))}")
  return path


def run_video(req, content: Path, styles: Sequence[Path], *, log: Callable[[str], None],
              progress: bool | None) -> list[Path]:
  """Stylises one video ``content`` with every style of ``styles`` (``stylize_files.run`` calls this)."""
  if req.mask or req.save_mask or req.sheet:
    raise stylize_files.UsageError("--mask, --save-mask and --sheet are for images, not video")
  info = probe(content)
  hw = frame_hw(info.hw, req.size)
  outputs = [output_path(req.output, content, s, len(styles)) for s in styles]
  for path in outputs:
    if image_io.same_file(path, content) or any(image_io.same_file(path, s) for s in styles):
      raise stylize_files.UsageError(f"{path}: refusing to overwrite an input (choose another --output)")
  stylize_files.check_writable_paths(outputs)
  params, cfg = model_lib.load(req.weights, stylize_files.needed_networks(req.mode, False), dtype=req.dtype)
  mesh = sharding.data_mesh()
  params = jax.device_put(params, sharding.replicated(mesh))
  program = portrait.make_program(cfg, mesh, mode=req.mode, feather=req.feather,
                                  keep_color=req.preserve_color)
  batch = -(-(req.batch_size or mesh.size) // mesh.size) * mesh.size
  for style_path, path in zip(styles, outputs):
    # The style at the frames' scale (also with --size 0): it is encoded again with every batch.
    style = image_io.load_image(style_path, req.size or max(hw))
    log(f"compiling the {req.mode} program for {hw[1]}x{hw[0]} frames (style {style.shape[1]}x"
        f"{style.shape[0]}, batch {batch}; first call, can take a minute unless cached); "
        f"{info.frames or 'unknown number of'} frames at {float(info.rate):.3g} fps")
    stylizer = Stylizer(req.mode, program, mesh, params, style, req.controls.as_array(), batch)
    stylize_clip(content, path, stylizer, info, hw, log=log, progress=progress)
  return outputs


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
  """``python -m jaxstyle.video pan IMAGE OUT.mp4 [--frames N --width W --height H --rate R]``."""
  import argparse
  p = argparse.ArgumentParser(prog="python -m jaxstyle.video")
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

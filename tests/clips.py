"""Short clips made with PyAV for the video tests (no binary fixtures), and a reader for what comes back."""
import av
import numpy as np


def write_clip(path, frames=12, rate=24, wh=(48, 40), audio_seconds=0.0, rotation=0):
  """An H.264 clip of a bright square sliding over a dark field, with a 440 Hz AAC tone if asked.

  ``rotation``: a display matrix's (degrees counterclockwise, a multiple of 90; a phone's portrait clip
  is −90): the frames are stored turned the other way, so that they are ``wh`` upright when displayed.
  """
  with av.open(str(path), "w") as out:
    stream = out.add_stream("libx264", rate=rate)
    stored = wh if rotation % 180 == 0 else wh[::-1]
    stream.width, stream.height, stream.pix_fmt = stored[0], stored[1], "yuv420p"
    if rotation:
      stream.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=22050) if audio_seconds else None
    for i in range(frames):
      img = np.full((wh[1], wh[0], 3), 40, np.uint8)
      img[8:32, 4 + 2 * i:20 + 2 * i] = 220
      img = np.ascontiguousarray(np.rot90(img, -rotation // 90))
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


def delay_clip(src, dst, seconds):
  """``src`` remuxed into ``dst`` with every packet ``seconds`` later (as MPEG-TS files and cut clips
  start), returning ``dst``."""
  with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
    streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
    for packet in inp.demux():
      if packet.dts is None:
        continue
      shift = round(seconds / packet.time_base)
      packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
      packet.stream = streams[packet.stream.index]
      out.mux(packet)
  return dst


def start_seconds(path, kind):
  """The first presentation time (s) of the first ``kind`` ("video" or "audio") stream's packets."""
  with av.open(str(path)) as c:
    stream = getattr(c.streams, kind)[0]
    return min(float(p.pts * p.time_base) for p in c.demux(stream) if p.pts is not None)

"""Short clips made with PyAV for the video tests (no binary fixtures), and a reader for what comes back."""
import av
import numpy as np


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

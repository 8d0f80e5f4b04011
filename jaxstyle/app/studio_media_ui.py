"""The studio page's clip and camera parts (Gradio): layout and callbacks only, below the pictures.

Both take the page's style and controls. A clip (``studio_clip.Clips``) shows its progress (frames
done, frames/s, time left) and can be cancelled; clips compute one at a time in a queue of their own,
so pictures do not wait behind one. The camera streams frames from the browser (Gradio's streaming
image input, one pending frame per stream: newer frames replace one not yet computed) into
``studio_live.Live``; one camera computes at a time, each for at most ``LIVE_SECONDS``. Both are API
endpoints too: ``/stylize_clip`` and ``/live_frame`` (``gradio_client``, which cannot join a stream:
one frame a call, the camera's function).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from jaxstyle.app import studio_clip
from jaxstyle.app import studio_live
from jaxstyle.app import studio_ui
from jaxstyle.app.request import REFUSALS

gr = studio_ui.gr
Upload = studio_ui.studio_lib.Upload
LIVE_SECONDS = 600       # of computing per camera stream (Gradio's time_limit): others may be waiting
STREAM_EVERY = 0.1       # seconds between the browser's frames: faster than any size computes here


def _upload(path: str | None):
  return path and Upload(path, Path(path).name)


def media(studio) -> studio_ui.Media:
  """The clip and camera parts for ``studio_ui.build_page(media=...)``, over one ``Studio``."""
  clips, live = studio_clip.Clips(studio), studio_live.Live(studio)

  def build(page: gr.Blocks, controls: dict) -> None:
    settings = [controls[name] for name in studio_ui.SETTINGS_INPUTS]
    gr.Markdown("### A clip\nStylised with the painting and the controls above, frame by frame, the "
                "person mask smoothed over time, the audio copied.")
    with gr.Row():
      with gr.Column(scale=1):
        clip = gr.File(label="Clip (a video)", file_types=sorted(studio_clip.VIDEO_SUFFIXES), type="filepath",
                       elem_id="clip")
        with gr.Row():
          go = gr.Button("Stylise the clip", variant="primary", elem_id="clip_go")
          cancel = gr.Button("Cancel", elem_id="clip_cancel")
        status = gr.Markdown(elem_id="clip_status")
      with gr.Column(scale=2):
        clip_result = gr.Video(label="stylised clip", interactive=False, elem_id="clip_result")
        clip_download = gr.DownloadButton("Download the clip", elem_id="clip_download")
    gr.Markdown("### Live camera\nPress record under the camera; each frame is stylised at the camera's "
                "size. Frames that come while one computes are dropped, the newest kept.")
    with gr.Row():
      with gr.Column(scale=1):
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="camera", elem_id="camera")
        live_size = gr.Slider(*studio_live.LIVE_SIZES, value=studio_live.DEFAULT_LIVE_SIZE, step=32,
                              label="camera size (longest side, px)", elem_id="live_size")
      with gr.Column(scale=1):
        live_result = gr.Image(label="live", interactive=False, format="jpeg", elem_id="live_result")
        fps = gr.Markdown(elem_id="live_fps")

    clip_event = gr.on([clip.upload, go.click], _clip_fn(clips), [clip, controls["style"], *settings],
                       [clip_result, clip_download, status], api_name="stylize_clip",
                       concurrency_limit=1, concurrency_id="clip")
    cancel.click(_cancel_fn(clips), None, None, cancels=[clip_event], queue=False, api_visibility="private")
    # The camera's own size stands in for the page's ``size`` (second of the settings).
    live_inputs = [controls["style"], settings[0], live_size, *settings[2:]]
    camera.stream(_live_fn(live), [camera, *live_inputs], [live_result, fps], api_name="live",
                  api_visibility="private", stream_every=STREAM_EVERY, time_limit=LIVE_SECONDS,
                  concurrency_limit=1, concurrency_id="live")
    # gradio_client cannot join a stream: the same function a frame per call, for the API.
    frame_in = gr.Image(type="numpy", visible=False)
    gr.Button(visible=False).click(_live_fn(live), [frame_in, *live_inputs], [live_result, fps],
                                   api_name="live_frame", concurrency_limit=1, concurrency_id="live")

    def close(request: gr.Request):
      clips.cancel(request.session_hash)
      live.close_tab(request.session_hash)
    page.unload(close)

  return build


def _clip_fn(clips: studio_clip.Clips) -> Callable:
  # Named parameters, not ``*settings``: Gradio fills ``request`` and ``progress`` by their names.
  def stylize_clip(clip: str | None, style: str | None, mode: str, size: float, w1_background: float,
                   w2_background: float, alpha_background: float, w1_person: float, w2_person: float,
                   alpha_person: float, feather: float, preserve_color: bool, style_scale_background: float,
                   style_scale_person: float, request: gr.Request, progress=gr.Progress()):
    """Stylises the video ``clip`` with the picture ``style`` at the settings (``/stylize``'s after its
    mask); returns the clip (to play), the same file (to download) and a line about the run."""
    if not clip or not style:
      raise gr.Error("upload a clip and a style (a painting) first", print_exception=False)
    progress((0, None), desc="reading the clip", unit="frames")
    report = lambda p: progress((p.done, p.total or None), desc=p.line(), unit="frames")
    settings = studio_ui.settings_from(mode, size, w1_background, w2_background, alpha_background, w1_person,
                                       w2_person, alpha_person, feather, preserve_color, style_scale_background,
                                       style_scale_person)
    try:
      out = clips.stylize(request.session_hash or "api", _upload(clip), _upload(style), settings,
                          on_progress=report)
    except REFUSALS as e:
      raise gr.Error(str(e), print_exception=False) from None
    line = f"{out.frames} frames in {out.seconds:.1f} s ({out.frames_per_s:.2f} frames/s after the first batch)"
    if out.flicker:
      line += f"; blend-weight flicker {out.flicker[0]:.4f} → {out.flicker[1]:.4f} smoothed"
    return str(out.path), str(out.path), line
  return stylize_clip


def _cancel_fn(clips: studio_clip.Clips) -> Callable:
  def cancel(request: gr.Request):
    clips.cancel(request.session_hash)
  return cancel


def _live_fn(live: studio_live.Live) -> Callable:
  def live_frame(frame, style: str | None, mode: str, size: float, w1_background: float, w2_background: float,
                 alpha_background: float, w1_person: float, w2_person: float, alpha_person: float,
                 feather: float, preserve_color: bool, style_scale_background: float, style_scale_person: float,
                 request: gr.Request):
    """One camera frame (RGB) stylised with ``style`` at the settings (``size``: the camera's);
    returns the frame and the frames per second reached."""
    if frame is None or not style:
      return gr.skip(), "choose a painting above, then record"
    settings = studio_ui.settings_from(mode, size, w1_background, w2_background, alpha_background, w1_person,
                                       w2_person, alpha_person, feather, preserve_color, style_scale_background,
                                       style_scale_person)
    try:
      image, rate = live.frame(request.session_hash or "api", frame, _upload(style), settings)
    except REFUSALS as e:
      raise gr.Error(str(e), print_exception=False) from None
    return (image * 255 + 0.5).astype("uint8"), f"**{rate:.1f} frames/s** at {image.shape[1]}x{image.shape[0]}"
  return live_frame

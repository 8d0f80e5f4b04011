"""The studio's page (Gradio): layout and callbacks only; every picture comes from ``Studio.stylize``.

``serve`` starts it on 127.0.0.1 (another host only when asked), offline: Gradio's analytics off, its
own bundled fonts and scripts (no CDN), no hub. Uploads and results live in one temporary folder
(``TEMP``, Gradio's ``GRADIO_TEMP_DIR``) removed at exit; each upload's file is deleted once read (``Studio``), and
Gradio's cache is swept every few minutes. One request computes at a time and at most ``queue_size``
wait (the rest are told the queue is full); a slider runs on release of the mouse, and only the last
of several pending changes runs. The same function is the API ``/stylize`` (``gradio_client``).
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable

# Gradio reads both when it is imported: no telemetry, and one temporary folder of the studio's own
# for uploads, results and Gradio's cache (its modules fix their folders at import), removed at exit
# (by ``serve`` on Ctrl-C or SIGTERM, and by the interpreter also where the module is only imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
TEMP = Path(tempfile.mkdtemp(prefix="jaxstyle-studio-"))
atexit.register(shutil.rmtree, TEMP, ignore_errors=True)
os.environ["GRADIO_TEMP_DIR"] = str(TEMP)
import gradio as gr  # noqa: E402
from gradio import processing_utils  # noqa: E402

from jaxstyle.app import request  # noqa: E402
from jaxstyle.app import studio as studio_lib  # noqa: E402
from jaxstyle.app.request import REFUSALS, Controls, Settings  # noqa: E402
from jaxstyle.io import assets  # noqa: E402
from jaxstyle.io import image_io  # noqa: E402

EXAMPLES = assets.root() / "examples"
CONTROL_FIELDS = [f.name for f in dataclasses.fields(Controls)]
SETTINGS_INPUTS = ["mode", "size", *CONTROL_FIELDS, "feather", "preserve_color", "style_scale_background",
                   "style_scale_person"]   # ``settings_from``'s arguments
CACHE_SWEEP = (300, 900)   # every 5 minutes, Gradio's files older than 15 minutes are deleted


def _examples(kind: str) -> list[str]:
  return sorted(str(p) for p in assets.examples(kind).iterdir() if image_io.is_image(p))


CONTROL_STEP = 0.025   # the controls search's finest step: every default control sits on the sliders' grid
STYLE_SCALE_STEP = 0.05


def _slider(field: str, value: float) -> gr.Slider:
  lo, hi = request.ALPHA_RANGE if field.startswith("alpha") else request.W_RANGE
  label = {"alpha": "α (style strength)", "w1": "W1 (relu4_1: texture)",
           "w2": "W2 (relu5_1: structure)"}[field.split("_")[0]]
  return gr.Slider(lo, hi, value=value, step=CONTROL_STEP, label=label, elem_id=field)


def settings_from(mode: str, size: float, w1_background: float, w2_background: float, alpha_background: float,
                  w1_person: float, w2_person: float, alpha_person: float, feather: float, preserve_color: bool,
                  style_scale_background: float, style_scale_person: float) -> Settings:
  """The page's controls (``SETTINGS_INPUTS``' order) as ``Settings``."""
  controls = Controls(w1_background, w2_background, alpha_background, w1_person, w2_person, alpha_person)
  return Settings(size=int(size), mode=mode, controls=controls, feather=float(feather),
                  preserve_color=bool(preserve_color), style_scale_background=float(style_scale_background),
                  style_scale_person=float(style_scale_person))


# Adds more of the page (clips, the camera) below the pictures: ``media(page, controls)`` inside the
# page's layout, ``controls`` the style input and the settings' components by name.
Media = Callable[[gr.Blocks, dict], None]


def build_page(studio: studio_lib.Studio, *, sizes: tuple[int, int] = (64, studio_lib.MAX_SIZE),
               default_size: int = studio_lib.DEFAULT_PAGE_SIZE, media: Media | None = None) -> gr.Blocks:
  """The page: inputs and controls on the left, the result and its parts on the right; ``media``'s
  parts below."""
  with gr.Blocks(title="jaxstyle studio", delete_cache=CACHE_SWEEP) as page:
    gr.Markdown("## jaxstyle studio\nPortrait-aware style transfer: SANet for the background, a "
                "content-dominant transfer for the person, blended through a SegNet mask.")
    with gr.Row():
      with gr.Column(scale=1):
        content = gr.File(label="Content (a portrait)", file_types=sorted(image_io.IMAGE_SUFFIXES),
                          type="filepath", elem_id="content")
        content_examples = gr.Gallery(_examples("content"), label="or a bundled portrait", columns=4,
                                      height=120, allow_preview=False, interactive=False,
                                      elem_id="content_examples")
        style = gr.File(label="Style (a painting)", file_types=sorted(image_io.IMAGE_SUFFIXES),
                        type="filepath", elem_id="style")
        style_examples = gr.Gallery(_examples("styles"), label="or a bundled painting", columns=4,
                                    height=120, allow_preview=False, interactive=False,
                                    elem_id="style_examples")
        with gr.Row():
          content_view = gr.Image(label="content", interactive=False, height=160, elem_id="content_view")
          style_view = gr.Image(label="style", interactive=False, height=160, elem_id="style_view")
        mode = gr.Radio(list(request.MODES), value=Settings.mode, label="mode", elem_id="mode")
        size = gr.Slider(*sizes, value=default_size, step=16, label="size (longest side, px)",
                         elem_id="size")
        defaults = Controls()
        sliders, scales = {}, {}
        for region, title in (("background", "Background (style-dominant)"),
                              ("person", "Person (content-dominant)")):
          with gr.Accordion(title, open=region == "person"):
            for name in ("alpha", "w1", "w2"):
              field = f"{name}_{region}"
              sliders[field] = _slider(field, getattr(defaults, field))
            scales[region] = gr.Slider(*request.STYLE_SCALE_RANGE, step=STYLE_SCALE_STEP,
                                       value=request.STYLE_SCALES["portrait"][region == "person"],
                                       label="style scale (the painting's longest side ÷ the content's)",
                                       elem_id=f"style_scale_{region}")
        feather = gr.Slider(0, request.MAX_FEATHER, value=Settings.feather, step=0.005, elem_id="feather",
                            label="feather (σ of the blend's edge inside the person, a fraction of the "
                                  "longer side)")
        preserve = gr.Checkbox(False, label="preserve the content's colours", elem_id="preserve_color")
        mask = gr.File(label="optional person mask (white = person)", type="filepath",
                       file_types=sorted(image_io.IMAGE_SUFFIXES), elem_id="mask")
      with gr.Column(scale=2):
        result = gr.Image(label="result", interactive=False, format="png", height=480, elem_id="result")
        download = gr.DownloadButton("Download the full-resolution PNG", elem_id="download")
        with gr.Row():
          mask_view = gr.Image(label="person mask", interactive=False, elem_id="mask_view")
          background = gr.Image(label="background transfer (plain SANet)", interactive=False,
                                elem_id="background")
          person = gr.Image(label="person transfer", interactive=False, elem_id="person")

    if media is not None:
      media(page, {"style": style, "mode": mode, "size": size, **{f: sliders[f] for f in CONTROL_FIELDS},
                   "feather": feather, "preserve_color": preserve, "style_scale_background": scales["background"],
                   "style_scale_person": scales["person"]})
    content_examples.select(_pick, content_examples, content, api_visibility="private")
    style_examples.select(_pick, style_examples, style, api_visibility="private")
    inputs = [content, style, mask, mode, size, *(sliders[f] for f in CONTROL_FIELDS), feather, preserve,
              scales["background"], scales["person"]]
    outputs = [result, download, mask_view, background, person, content_view, style_view]
    gr.on([content.change, style.change, mask.change, mode.change, size.release,
           *(s.release for s in [*sliders.values(), *scales.values()]), feather.release, preserve.change],
          _stylize_fn(studio), inputs, outputs, api_name="stylize", trigger_mode="always_last")
    page.unload(_close_fn(studio))
  return page


def _pick(gallery: list, selected: gr.SelectData) -> str:
  """The bundled picture clicked in a gallery, as the file input's value."""
  return gallery[selected.index][0]


def _stylize_fn(studio: studio_lib.Studio) -> Callable:
  def stylize(content: str | None, style: str | None, mask: str | None, mode: str, size: float,
              w1_background: float, w2_background: float, alpha_background: float, w1_person: float,
              w2_person: float, alpha_person: float, feather: float, preserve_color: bool,
              style_scale_background: float, style_scale_person: float, request: gr.Request):
    """Stylises ``content`` with ``style`` (image files; ``mask``: an optional person mask) at
    ``size`` px; returns the result, a PNG of it to download, the mask and both region transfers
    (mask and person None in plain mode), and the content and style as loaded."""
    if not content or not style:
      return (None,) * 5 + (gr.skip(), gr.skip())
    settings = settings_from(mode, size, w1_background, w2_background, alpha_background, w1_person, w2_person,
                             alpha_person, feather, preserve_color, style_scale_background, style_scale_person)
    upload = lambda f: f and studio_lib.Upload(f, Path(f).name)
    try:
      out = studio.stylize(request.session_hash or "api", upload(content), upload(style), upload(mask),
                           settings)
    except REFUSALS as e:
      raise gr.Error(str(e), print_exception=False) from None
    png = studio.save_png(out.image, f"{Path(content).stem}__{Path(style).stem}.png")
    pictures = (out.image, out.mask, out.background, out.person, out.content, out.style)
    image, mask_image, background, person, content_image, style_image = (   # 8-bit, as saved
        None if p is None else image_io.to_pil(p) for p in pictures)
    return image, png, mask_image, background, person, content_image, style_image
  return stylize


def _close_fn(studio: studio_lib.Studio) -> Callable:
  def close(request: gr.Request):
    studio.close_tab(request.session_hash)
  return close


def serve(weights: str | None = None, *, host: str = "127.0.0.1", port: int | None = None, dtype: str = "auto",
          cache_mb: int = studio_lib.DEFAULT_CACHE_BYTES >> 20, queue_size: int = studio_lib.DEFAULT_QUEUE,
          default_size: int = studio_lib.DEFAULT_PAGE_SIZE,
          media: Callable[[studio_lib.Studio], Media] | None = None) -> None:
  """Loads the weights once and serves the page (and ``media(studio)``'s parts) until interrupted
  (Ctrl-C or SIGTERM), then removes its temporary folder."""
  temp = TEMP
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # a stopped server cleans up too
  try:
    # Gradio names an upload's folder by its bytes (``hash_bytes``), so equal uploads share one file.
    studio = studio_lib.Studio(weights, dtype=dtype, cache_bytes=cache_mb << 20, forget_under=temp,
                               content_address=processing_utils.hash_bytes,
                               keep=_examples("content") + _examples("styles"), results_dir=temp / "results")
    page = build_page(studio, default_size=default_size, media=None if media is None else media(studio))
    page.queue(max_size=queue_size, default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, max_file_size=studio_lib.MAX_UPLOAD_BYTES,
                show_error=True, allowed_paths=[str(EXAMPLES)], footer_links=["api"])
  finally:
    shutil.rmtree(temp, ignore_errors=True)

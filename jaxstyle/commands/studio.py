"""The studio: a local web page to stylise a portrait with a painting and move the controls.

    jaxstyle studio                      # http://127.0.0.1:7860, the shipped weights
    jaxstyle studio --port 8080 --weights DIR --cache-mb 2048
    jaxstyle studio --host 0.0.0.0       # other machines may connect: opt-in

Parses flags and calls ``jaxstyle.app.studio_ui.serve`` (the page, with the clip and camera parts of
``studio_media_ui``; the computing is ``jaxstyle.app.studio``, ``studio_clip`` and ``studio_live``). A
refusal at start-up (missing or broken weights, a bad option) prints one line ``error: ...`` and exits
with status 2 (``jaxstyle.io.cli``).
"""
from __future__ import annotations

import sys
from typing import Sequence

from jaxstyle.app import request
from jaxstyle.app import studio
from jaxstyle.io import cli
from jaxstyle.io.cli import UsageError
from jaxstyle.io.weights import WeightsError

REFUSALS = (WeightsError, UsageError, OSError)


def build_parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="jaxstyle studio", description=__doc__.split("\n\n")[0])
  p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s: this machine only)")
  p.add_argument("--port", type=int, default=7860, help="port (%(default)s)")
  p.add_argument("--weights", metavar="DIR",
                 help="weights folder with MANIFEST.json (default: the weights shipped in the package)")
  p.add_argument("--dtype", choices=request.DTYPES, default="auto",
                 help="compute dtype (%(default)s: bfloat16 on a GPU or a CPU with bf16 units, else float32)")
  p.add_argument("--cache-mb", type=int, default=studio.DEFAULT_CACHE_BYTES >> 20,
                 help="memory for prepared pairs and uploads, all tabs together (%(default)s MiB)")
  p.add_argument("--queue", type=int, default=studio.DEFAULT_QUEUE, help="requests that may wait; more are refused (%(default)s)")
  p.add_argument("--size", type=int, default=studio.DEFAULT_PAGE_SIZE, help="the page's starting size (%(default)s px)")
  p.add_argument("--debug", action="store_true", help=f"print tracebacks (also: {cli.DEBUG_ENV}=1)")
  return p


def _main(argv: Sequence[str] | None) -> int:
  args = build_parser().parse_args(argv)
  if not 0 < args.port < 65536:
    raise UsageError(f"--port must be 1..65535, not {args.port}")
  if args.cache_mb < 1 or args.queue < 1:
    raise UsageError("--cache-mb and --queue must be at least 1")
  from jaxstyle.app import studio_media_ui, studio_ui   # Gradio is imported only to serve
  studio_ui.serve(args.weights, host=args.host, port=args.port, dtype=args.dtype,
                  cache_mb=args.cache_mb, queue_size=args.queue, default_size=args.size,
                  media=studio_media_ui.media)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(lambda: _main(argv), REFUSALS, debug=cli.debug_requested(argv))


if __name__ == "__main__":
  sys.exit(main())

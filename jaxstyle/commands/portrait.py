"""Portrait-aware style transfer of image files from the command line (``jaxstyle portrait``).

    jaxstyle portrait --content me.jpg --style starry.jpg --output me_starry.png
    jaxstyle portrait --content photos/ --style styles/ --output out --sheet --save-mask
    jaxstyle portrait --content list.txt --style styles/ --output out \
        --coordinator_address host0:1234 --num_processes 2 --process_id 0     # and 1 on the other host
    jaxstyle portrait --content list.txt --style styles/ --output out --engine ray --ray-address auto

Parses flags, joins the ``jax.distributed`` job when asked (the trainers' flags, or
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``) or, with ``--engine ray``,
a Ray cluster (``jaxstyle.app.ray_engine``: Ray is imported only then), and calls
``jaxstyle.app.stylize_files.stylize``; prints the files written (one a line, on stdout) and a line with
the pairs done, skipped and failed. Every refusal (an unreadable or non-finite image in a run of one
pair, an unreadable style, missing or broken weights, options out of range or that do not fit together,
an unwritable output folder, a non-finite result) prints one line ``error: ...`` to stderr and exits
with status 2; so does a collection in which pairs failed, after every other pair was written (each
failure's reason is in the run summary). Tracebacks only with ``--debug`` or ``JAXSTYLE_DEBUG=1``
(``jaxstyle.io.cli``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

from jaxstyle.app import collection
from jaxstyle.app import ray_engine
from jaxstyle.app import request
from jaxstyle.app import stylize_files
from jaxstyle.app.request import Request, Settings
from jaxstyle.io import cli
from jaxstyle.program import portrait
from jaxstyle.program import sharding
from jaxstyle.program.portrait import EDGE_INSET, Controls

DEFAULTS = Request(content=(), style=())
REFUSALS = request.REFUSALS + (collection.PairsFailed, ray_engine.EngineStopped)
ENGINES = ("local", "ray")


def build_parser() -> argparse.ArgumentParser:
  p = cli.ArgumentParser(prog="jaxstyle portrait", description=__doc__.split("\n\n")[0])
  p.add_argument("--content", nargs="+", required=True, metavar="PATH",
                 help="content image(s), folder(s) of images, .txt list(s) of paths (one a line) and/or "
                      "tfds:NAME[:SPLIT] datasets (array_record)")
  p.add_argument("--style", nargs="+", required=True, metavar="PATH",
                 help="style image(s), folder(s), lists or datasets; every content is paired with "
                      "every style")
  p.add_argument("--output", "-o", default=DEFAULTS.output, metavar="PATH",
                 help="folder for CONTENT__STYLE.png, or one file (e.g. out.jpg) for a single pair")
  p.add_argument("--weights", default=DEFAULTS.weights, metavar="DIR",
                 help="weights folder with MANIFEST.json (default: the weights shipped in the package)")
  p.add_argument("--size", type=int, default=DEFAULTS.settings.size,
                 help=f"longest side of content and style in px, 16..{request.MAX_SIZE}; 0 keeps the "
                      "files' sizes (%(default)s)")
  p.add_argument("--mode", choices=portrait.MODES, default=DEFAULTS.settings.mode,
                 help="portrait: person and background stylised apart; plain: SANet as published")
  p.add_argument("--mask", metavar="FILE",
                 help="your own person mask (white or opaque = person) instead of SegNet's")
  p.add_argument("--feather", type=float, default=DEFAULTS.settings.feather,
                 help=f"σ of the blend's soft edge, a fraction 0..{request.MAX_FEATHER:g} of the longer side "
                      f"(%(default)s); the edge is centred {EDGE_INSET:g} σ inside the person's outline")
  p.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
  lo, hi = request.STYLE_SCALE_RANGE
  scales = {mode: ", ".join(f"{s:g}" for s in request.STYLE_SCALES[mode][:n])
            for mode, n in (("portrait", 2), ("plain", 1))}
  p.add_argument("--style-scale", type=float, metavar="S",
                 help=f"the style's longest side as a fraction {lo:g}..{hi:g} of the content's, for both "
                      "regions (below 1: larger strokes); --size 0 keeps the file's own scale")
  for region in ("background", "person"):
    p.add_argument(f"--style-scale-{region}", type=float, metavar="S",
                   help=f"the same for the {region} alone (defaults: portrait {scales['portrait']} for "
                        f"background, person; plain {scales['plain']})")
  p.add_argument("--dtype", choices=request.DTYPES, default=DEFAULTS.dtype,
                 help="compute dtype (%(default)s: bfloat16 on a GPU or a CPU with bf16 units, else float32; "
                      "one line says which); params stay float32")
  p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                 help="pairs per program call, rounded up to the device count (0: one per device)")
  p.add_argument("--overwrite", action="store_true",
                 help="redo pairs whose outputs exist (by default a rerun skips them)")
  # The command keeps a record by default; a library caller gets it from the returned report.
  p.add_argument("--summary", default=collection.AUTO, metavar="FILE",
                 help=f"JSON lines, one per pair: input, style, output, status, seconds, reason "
                      f"(default: OUTPUT/{collection.SUMMARY_NAME} when there are several pairs; "
                      "NAME.process-I-of-N.jsonl with several processes)")
  p.add_argument("--io-threads", type=int, default=DEFAULTS.io_threads, metavar="N",
                 help="threads decoding inputs (and one writing outputs) while the program computes; "
                      "0: decode, compute and write in turn (%(default)s)")
  p.add_argument("--tfds-data-dir", default=DEFAULTS.tfds_data_dir, metavar="DIR",
                 help="where tfds:NAME inputs are prepared (default: tfds' own)")
  p.add_argument("--coordinator_address", metavar="HOST:PORT",
                 help="process 0's address: with --num_processes, each process stylises its share of "
                      "the pairs (also: JAX_COORDINATOR_ADDRESS)")
  p.add_argument("--num_processes", type=int, help="processes in the job (also: JAX_NUM_PROCESSES)")
  p.add_argument("--process_id", type=int, help="this process's index, 0.. (also: JAX_PROCESS_ID)")
  p.add_argument("--engine", choices=ENGINES, default="local",
                 help="local: this process's devices (and its share of a jax.distributed job); ray: the "
                      f"pairs scheduled over a Ray cluster's actors, retried when one dies ({ray_engine.INSTALL})")
  p.add_argument("--ray-address", metavar="ADDRESS",
                 help="with --engine ray: auto (the cluster this machine joined with `ray start`) or "
                      "ray://HOST:PORT; default: a local cluster of this machine, started for the run")
  p.add_argument("--ray-actors", metavar="N|MIN-MAX",
                 help="with --engine ray: actors stylising at once, or a range to scale between "
                      "(default: one per GPU, or one per node with all its cores)")
  p.add_argument("--save-mask", nargs="?", const=True, default=False, metavar="DIR",
                 help="also write the mask: NAME.mask.png next to the output, or DIR/NAME.png")
  p.add_argument("--sheet", nargs="?", const=True, default=False, metavar="DIR",
                 help="also write a comparison sheet (content | style | plain | mask | person | "
                      "combined): NAME.sheet.png next to the output, or DIR/NAME.png")
  w_range = "{:g}..{:g}".format(*request.W_RANGE)
  for region, what in (("background", "background (style-dominant)"),
                       ("person", "person (content-dominant)")):
    for field, metavar, help_ in (
        ("w1", "W1", f"weight {w_range} of the relu4_1 attention (local texture) in the"),
        ("w2", "W2", f"weight {w_range} of the relu5_1 attention (global structure) in the"),
        ("alpha", "A", "style strength 0..1 (0 = SANet's identity transfer T(c, c), 1 = full transfer) in the")):
      name = f"{field}_{region}"
      p.add_argument(f"--{field}-{region}", type=float, default=getattr(Controls, name), metavar=metavar,
                     help=f"{help_} {what} (%(default)s)")
  p.add_argument("--debug", action="store_true", help=f"print tracebacks (also: {cli.DEBUG_ENV}=1)")
  return p


def request_from_args(args: argparse.Namespace) -> Request:
  """The flags, by field name: ``Controls`` and ``Settings`` nested in the ``Request``."""
  def fields(cls, **nested):
    return cls(**{f.name: nested[f.name] if f.name in nested else getattr(args, f.name)
                  for f in dataclasses.fields(cls)})
  # --style-scale sets both regions; a region's own flag wins.
  scales = {f"style_scale_{r}": args.style_scale if getattr(args, f"style_scale_{r}") is None
            else getattr(args, f"style_scale_{r}") for r in ("background", "person")}
  return fields(Request, settings=fields(Settings, controls=fields(Controls), **scales))


def engine_from_args(args: argparse.Namespace) -> ray_engine.RayEngine | None:
  """The Ray engine when ``--engine ray`` (None: the local engine); refuses flags of the other one."""
  if args.engine != "ray":
    if args.ray_address or args.ray_actors:
      raise request.UsageError("--ray-address and --ray-actors are for --engine ray")
    return None
  if args.coordinator_address or args.num_processes or "JAX_COORDINATOR_ADDRESS" in os.environ:
    raise request.UsageError("--engine ray schedules the pairs over the cluster itself: drop the "
                             "jax.distributed flags (--coordinator_address, --num_processes, JAX_*)")
  return ray_engine.RayEngine(args.ray_address, args.ray_actors)


def _main(argv: Sequence[str] | None) -> int:
  args = build_parser().parse_args(argv)
  engine = engine_from_args(args)
  if engine is None:
    sharding.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  report = stylize_files.stylize(request_from_args(args), engine=engine)
  if report.written:
    print("\n".join(map(str, report.written)))   # one written file a line, for scripts
  print(report.line(), file=sys.stderr)
  report.raise_for_failures()
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(lambda: _main(argv), REFUSALS, debug=cli.debug_requested(argv))


if __name__ == "__main__":
  sys.exit(main())

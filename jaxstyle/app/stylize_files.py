"""Stylises image files: the library behind ``python -m infer.portrait`` (importable, no shell needed).

    run(Request(content=["photos/"], style=["styles/"], output="out", sheet=True))

- Inputs: ``content`` and ``style`` each name files and/or folders (a folder gives its image files, sorted
  by name, hidden files skipped); every content is paired with every style, content-major.
- Outputs: ``OUTPUT/CONTENT__STYLE.png``, or exactly ``OUTPUT`` when there is one pair and ``OUTPUT``
  has an image suffix. ``save_mask`` / ``sheet``: ``True`` writes ``NAME.mask.png`` / ``NAME.sheet.png``
  next to the output, a folder writes ``FOLDER/NAME.png``. Every file is written atomically; no output
  may be an input, and no two outputs may share a path (checked before anything runs).
- Batching: pairs are grouped by shape bucket (``buckets.py``: content sides rounded up to multiples of
  128, styles padded to one square), and each group runs through the one jitted program of
  ``portrait.make_program`` over ``sharding.data_mesh()``, in batches padded (repeating the last pair)
  to the group's batch size, a multiple of the device count. Padding is reflection at the bottom/right;
  the program is told each picture's valid size (padded positions are never attention keys nor in
  SANet's statistics), and every output is cropped back to its content's exact size. A folder of mixed
  sizes at one ``--size`` compiles about three programs (portrait, square, landscape), and JAX's
  persistent cache (``compile_cache.py``) keeps them for later runs. The sheet's "plain" panel is the
  portrait program's background row (no second program).
- Video: one video as ``content`` goes to ``stylize_video.run_video`` (frames in batches, audio copied).
- Weights: a ``weights.py`` folder whose manifest names the model config; the ImageNet VGG-19 encoder comes
  from ``jaxstyle.checkpoints.pretrained``'s cache when the manifest says so. Missing weights are an error that says
  how to get them: a picture from random weights is never made.

Errors meant for the user are ``ImageError`` (an input or output file), ``WeightsError`` (the weights) and
``UsageError`` (options that do not fit together; ``request.py`` holds the checks); each has a one-line
message.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from jaxstyle.app import stylize_video
from jaxstyle.app.request import (Request, UsageError, check_finite, check_request, check_writable_paths,
                                  load_params, out_of_memory_as_usage_error, per_call, stylize_batch)
from jaxstyle.io import image_io
from jaxstyle.io import video
from jaxstyle.io.image_io import IMAGE_SUFFIXES, ImageError
from jaxstyle.io.sheet import comparison_sheet, sheet_panels
from jaxstyle.program import buckets
from jaxstyle.program import compile_cache
from jaxstyle.program import portrait


@dataclasses.dataclass(frozen=True)
class Job:
  """One (content, style) pair and the files it writes."""
  content: int
  style: int
  image: Path
  mask: Path | None
  sheet: Path | None


def check_writable(jobs: Sequence[Job]) -> None:
  """Every output folder is, or can be made, a writable folder: found before any computing."""
  check_writable_paths([p for job in jobs for p in (job.image, job.mask, job.sheet) if p])


def expand_inputs(paths: Iterable[str], flag: str) -> list[Path]:
  """Files as given and the image files of folders (sorted by name), without repeats."""
  files: list[Path] = []
  for path in map(Path, paths):
    if path.is_dir():
      found = sorted((f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                      and not f.name.startswith(".") and f.is_file()), key=lambda f: f.name)
      if not found:
        raise UsageError(f"{flag} {path}: the folder holds no image files "
                         f"({' '.join(sorted(IMAGE_SUFFIXES))})")
      files += found
    elif path.exists():
      files.append(path)
    else:
      raise ImageError(f"{path}: no such file or folder")
  unique: dict[Path, Path] = {}
  for f in files:
    unique.setdefault(f.resolve(), f)
  return list(unique.values())


def side_path(where: bool | str, image: Path, kind: str) -> Path | None:
  """Where a mask/sheet goes: next to ``image``, into a folder, or exactly ``where`` when it names an
  image file (one pair only: two pairs writing one file are refused by ``plan_jobs``)."""
  if not where:
    return None
  if where is True:
    return image.with_name(f"{image.stem}.{kind}.png")
  if Path(where).suffix.lower() in IMAGE_SUFFIXES:
    return Path(where)
  return Path(where) / f"{image.stem}.png"


def plan_jobs(contents: Sequence[Path], styles: Sequence[Path], req: Request) -> list[Job]:
  """One ``Job`` per pair, content-major; refuses outputs that are inputs or that collide."""
  out = Path(req.output)
  names_a_file = out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
  n_pairs = len(contents) * len(styles)
  if names_a_file and n_pairs > 1:
    raise UsageError(f"--output {out} names one file but there are {n_pairs} (content, style) pairs: "
                     "give a folder")
  jobs = []
  for (c, content), (s, style) in itertools.product(enumerate(contents), enumerate(styles)):
    image = out if names_a_file else out / f"{content.stem}__{style.stem}.png"
    jobs.append(Job(c, s, image, side_path(req.save_mask, image, "mask"),
                    side_path(req.sheet, image, "sheet")))
  inputs = [*contents, *styles, *([Path(req.mask)] if req.mask else [])]
  seen: dict[Path, Path] = {}
  for job in jobs:
    for path in filter(None, (job.image, job.mask, job.sheet)):
      if any(image_io.same_file(path, p) for p in inputs):
        raise UsageError(f"{path}: refusing to overwrite an input image (choose another --output)")
      key = path.resolve()
      if key in seen:
        raise UsageError(f"{path} would be written twice: inputs {contents[job.content].name} / "
                         f"{styles[job.style].name} share a name with another pair's")
      seen[key] = path
  return jobs


# --- running ----------------------------------------------------------------------------------------


def group_jobs(jobs: Sequence[Job], contents: Sequence[np.ndarray],
               styles: Sequence[np.ndarray]) -> dict[tuple, list[Job]]:
  """Jobs by (content bucket, style bucket) (``buckets.py``), in order of first appearance."""
  groups: dict[tuple, list[Job]] = {}
  for job in jobs:
    key = (buckets.content_bucket(contents[job.content].shape[:2]),
           buckets.style_bucket(styles[job.style].shape[:2]))
    groups.setdefault(key, []).append(job)
  return groups


def write_outputs(job: Job, out: dict[str, np.ndarray], controls: portrait.Controls, content: np.ndarray,
                  style: np.ndarray, inputs: Sequence[Path]) -> list[Path]:
  """Saves one pair's image (and mask and sheet when asked); returns the paths. Refuses an output
  that is not finite (``check_finite``)."""
  check_finite(out, job.image)
  save = functools.partial(image_io.save_image_atomic, inputs=inputs)
  written = [save(job.image, out["image"])]
  if job.mask:
    written.append(save(job.mask, out["mask"]))
  if job.sheet:
    written.append(save(job.sheet, comparison_sheet(sheet_panels(content, style, out, controls))))
  return written


def _log(message: str) -> None:
  tqdm.write(message, file=sys.stderr)


def run(req: Request, *, log: Callable[[str], None] = _log, progress: bool | None = None) -> list[Path]:
  """Stylises every (content, style) pair of ``req``; returns the files written, in order.

  ``progress``: a tqdm bar with ETA on stderr (None: only on a terminal).
  """
  check_request(req)
  compile_cache.enable(log)
  if any(video.is_video(p) for p in req.content):
    if len(req.content) != 1 or Path(req.content[0]).is_dir():
      raise UsageError("give one video as --content (a video is stylised on its own)")
    return stylize_video.run_video(req, Path(req.content[0]), expand_inputs(req.style, "--style"), log=log,
                           progress=progress)
  content_paths = expand_inputs(req.content, "--content")
  style_paths = expand_inputs(req.style, "--style")
  if req.mask and len(content_paths) != 1:
    raise UsageError(f"--mask is one person's mask: give exactly one --content image, "
                     f"not {len(content_paths)}")
  jobs = plan_jobs(content_paths, style_paths, req)
  check_writable(jobs)
  inputs = [*content_paths, *style_paths, *([Path(req.mask)] if req.mask else [])]
  params, cfg, mesh = load_params(req, bool(req.mask))

  contents = [image_io.load_image(p, req.size or None) for p in content_paths]
  styles = [image_io.load_image(p, req.size or None) for p in style_paths]
  user_mask = image_io.load_mask(req.mask, contents[0].shape[:2]) if req.mask else None

  program = portrait.make_program(cfg, mesh, mode=req.mode, feather=req.feather,
                                  keep_color=req.preserve_color, with_sizes=True,
                                  with_mask=user_mask is not None)
  batch_size = per_call(req, mesh)

  written: list[Path] = []
  with tqdm(total=len(jobs), unit="pair", disable=None if progress is None else not progress) as bar:
    for ((h, w), (hs, ws)), group in group_jobs(jobs, contents, styles).items():
      batch = min(batch_size, -(-len(group) // mesh.size) * mesh.size)
      log(f"compiling the {req.mode} program for contents padded to {w}x{h}, styles to {ws}x{hs} "
          f"(batch {batch}, {len(group)} pair{'s' * (len(group) > 1)}; first call, can take a minute "
          f"unless cached)")
      for start in range(0, len(group), batch):
        chunk = group[start:start + batch]
        cs, ss = [contents[j.content] for j in chunk], [styles[j.style] for j in chunk]
        c, s = buckets.pad_items(cs, (h, w), batch), buckets.pad_items(ss, (hs, ws), batch)
        m = None if user_mask is None else buckets.pad_items([user_mask] * batch, (h, w), batch, "edge")
        with out_of_memory_as_usage_error(f"{w}x{h}", batch):
          out = stylize_batch(program, mesh, params, c, s, req.controls.as_array(), m,
                              buckets.sizes_of(cs, ss, batch))
          out = {k: np.asarray(v) for k, v in out.items()}
        for i, job in enumerate(chunk):
          crop = functools.partial(buckets.crop, hw=cs[i].shape[:2])
          written += write_outputs(job, {k: crop(v[i]) for k, v in out.items()}, req.controls,
                                   cs[i], ss[i], inputs)
        bar.update(len(chunk))
  return written

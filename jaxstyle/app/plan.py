"""What a run over image files will do, decided before any pixel is computed: the ``Plan``.

    plan = make_plan(Request(content=["photos/"], style=["styles/"], output="out"))

- Inputs (``sources.py``): ``content`` and ``style`` each name files, folders, ``.txt`` lists of paths
  and ``tfds:NAME[:SPLIT]`` datasets; every content is paired with every style, content-major.
- Outputs: ``OUTPUT/CONTENT__STYLE.png``, or exactly ``OUTPUT`` when there is one pair and ``OUTPUT``
  has an image suffix. ``save_mask`` / ``sheet``: ``True`` writes ``NAME.mask.png`` / ``NAME.sheet.png``
  next to the output, a folder writes ``FOLDER/NAME.png``. No output may be an input, no two outputs may
  share a path, and every output folder must be writable: all refused here.
- This process's share (``collection.share``), the pairs of it already written (skipped unless
  ``overwrite``), and where the run summary goes.
- Styles (and ``mask``'s file name) are read here and a bad style is refused: every pair of it would
  fail; each at the side its region's style scale asks for (``request.style_sides``: the person's a
  second time only when its scale differs). Contents are only named; the pipeline decodes them.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jaxstyle.app import collection
from jaxstyle.app import sources
from jaxstyle.app.request import Request, UsageError, check_not_inputs, check_writable_paths, style_sides
from jaxstyle.app.sources import Input
from jaxstyle.io import image_io
from jaxstyle.io.image_io import IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class Job:
  """One (content, style) pair and the files it writes."""
  content: int
  style: int
  image: Path
  mask: Path | None
  sheet: Path | None

  @property
  def outputs(self) -> list[Path]:
    return [p for p in (self.image, self.mask, self.sheet) if p]


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


def input_files(contents: Sequence[Input], styles: Sequence[Input], req: Request) -> list[Path]:
  """Every input that is a file (contents, styles, ``--mask``): what no output may overwrite."""
  return [p for p in (*contents, *styles, *([Path(req.mask)] if req.mask else [])) if isinstance(p, Path)]


def plan_jobs(contents: Sequence[Input], styles: Sequence[Input], req: Request) -> list[Job]:
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
  check_not_inputs([p for job in jobs for p in job.outputs], input_files(contents, styles, req))
  seen: dict[Path, Path] = {}
  for job in jobs:
    for path in job.outputs:
      key = path.resolve()
      if key in seen:
        raise UsageError(f"{path} would be written twice: inputs {contents[job.content].name} / "
                         f"{styles[job.style].name} share a name with another pair's")
      seen[key] = path
  return jobs


def pending(jobs: Sequence[Job], overwrite: bool) -> list[Job]:
  """The pairs of ``jobs`` still to compute: those with a file not yet whole (all with ``overwrite``).
  Files are written atomically, so a whole file is a finished one."""
  return list(jobs) if overwrite else [j for j in jobs if not collection.is_done(j.outputs)]


def remove_partials(jobs: Sequence[Job]) -> None:
  """Deletes the temporary files a killed writer left beside the outputs of ``jobs`` (while no one
  else writes them)."""
  image_io.remove_partials(p for job in jobs for p in job.outputs)


@dataclasses.dataclass(frozen=True)
class Plan:
  """This process's part of a run: its pairs, which of them to compute, and what they read."""
  request: Request
  contents: Sequence[Input]
  style_items: Sequence[Input]
  styles: Sequence[np.ndarray]   # decoded at the background's style side (``request.style_sides``)
  jobs: Sequence[Job]            # every pair of the run, content-major
  mine: Sequence[Job]            # this process's share
  todo: Sequence[Job]            # of ``mine``, what is not written yet (all of it with ``overwrite``)
  summary: Path | None           # where this process's run summary goes
  inputs: Sequence[Path]         # every input file: what no output may overwrite
  person_styles: Sequence[np.ndarray] | None = None   # at the person's side, when it differs

  @property
  def skipped(self) -> list[Job]:
    pending = set(self.todo)
    return [j for j in self.mine if j not in pending]

  def names(self, job: Job) -> tuple[str, str]:
    """How the run summary names a pair's content and style."""
    return sources.label(self.contents[job.content]), sources.label(self.style_items[job.style])

  @property
  def strict(self) -> bool:
    """A run of one pair refuses a bad content at once instead of recording it."""
    return len(self.jobs) == 1


def make_plan(req: Request, process: int = 0, processes: int = 1,
              log: Callable[[str], None] = lambda _: None) -> Plan:
  """The ``Plan`` of process ``process`` of ``processes`` (``Request`` checked already); refuses
  (``UsageError``, ``ImageError``) what would fail later. Deletes the temporary files a killed run
  left beside this share's outputs, so that what is written is whole. Every process plans together:
  the plan starts where their collectives connect (``collection.meet``)."""
  collection.meet()
  contents = sources.expand_inputs(req.content, "--content", req.tfds_data_dir)
  style_items = sources.expand_inputs(req.style, "--style", req.tfds_data_dir)
  if req.mask and len(contents) != 1:
    raise UsageError(f"--mask is one person's mask: give exactly one --content image, "
                     f"not {len(contents)}")
  jobs = plan_jobs(contents, style_items, req)
  summary = collection.summary_path(req.summary, req.output, len(jobs), process, processes)
  check_writable_paths([p for job in jobs for p in job.outputs] + ([summary] if summary else []))
  mine = collection.share(jobs, process, processes)
  remove_partials(mine)
  todo = pending(mine, req.overwrite)
  if processes > 1:
    log(f"process {process} of {processes}: {len(mine)} of {len(jobs)} pairs")
  if len(todo) < len(mine):
    log(f"{len(mine) - len(todo)} of {len(mine)} pairs are written already: skipped "
        "(--overwrite redoes them)")
  (background, person), note = style_sides(req.settings)
  if note:
    log(note)
  styles = [sources.read(s, background) for s in style_items]   # a bad style is refused here
  person_styles = None if person is None else [sources.read(s, person) for s in style_items]
  return Plan(req, contents, style_items, styles, jobs, mine, todo, summary,
              input_files(contents, style_items, req), person_styles)

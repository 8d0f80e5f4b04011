"""What ``--content`` and ``--style`` name: image files, folders, lists of paths and tfds datasets.

    --content me.jpg photos/ more.txt tfds:coco/2017:validation

- A file is itself; a folder gives its image files (``image_io.IMAGE_SUFFIXES``, sorted by name, hidden
  files skipped); a ``.txt`` file lists one path a line (a file or a folder; relative paths start at the
  list's folder; blank lines and ``#`` comments are skipped); ``tfds:NAME[:SPLIT]`` is every record of a
  tfds split (``train`` when not given, slices such as ``validation[:500]`` allowed) prepared in the
  ``array_record`` format (``jaxstyle.io.datasets``), its ``image`` feature decoded by ``image_io``.
- The items keep the arguments' order, each expanded as above, without repeats: every process of a run
  builds the same list, so the pairs and each process's share of them agree everywhere.
- A video (``io.video``'s suffixes) as the one ``--content`` is stylised as a clip (``is_video``).
- A path given as an argument must exist (refused at once, as a typo should be); a path a list names is
  an item of the collection like any other, and a missing one fails when it is read.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from jaxstyle.io import datasets
from jaxstyle.io import image_io
from jaxstyle.io import video
from jaxstyle.io.cli import UsageError, one_line
from jaxstyle.io.image_io import IMAGE_SUFFIXES, ImageError

LIST_SUFFIX = ".txt"
TFDS_PREFIX = "tfds:"
TFDS_IMAGE_KEY = "image"


@dataclasses.dataclass(frozen=True)
class Record:
  """One image of a tfds split (``tfds:NAME:SPLIT`` record ``index``), read when it is needed."""
  spec: str
  index: int
  dataset: Any = dataclasses.field(compare=False, repr=False)

  @property
  def name(self) -> str:
    return f"{self.spec}#{self.index}"

  @property
  def stem(self) -> str:
    """File-name-safe: ``coco_2017_validation_000042`` (outputs are ``STEM__STYLE.png``)."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", self.spec[len(TFDS_PREFIX):]).strip("_")
    return f"{slug}_{self.index:06d}"

  def data(self) -> bytes:
    try:
      return bytes(self.dataset[self.index][TFDS_IMAGE_KEY])
    except Exception as e:  # pylint: disable=broad-except   whatever the record reader raises
      raise ImageError(f"{self.name}: cannot read the record ({one_line(e)})") from None


Input = Path | Record


def is_video(arg: str | Path) -> bool:
  """Whether an argument names a video file, by its suffix, as every FFmpeg container is named."""
  return video.is_video(arg)


def label(item: Input) -> str:
  """How messages and the run summary name an item."""
  return item.name if isinstance(item, Record) else str(item)


def read(item: Input, max_side: int | None) -> np.ndarray:
  """``image_io.load_image`` of a file or a record."""
  if isinstance(item, Record):
    return image_io.load_image(image_io.NamedBytes(item.data(), item.name), max_side)
  return image_io.load_image(item, max_side)


def probe(item: Input, max_side: int | None) -> tuple[int, int]:
  """``image_io.probe_hw`` of a file or a record: the size ``read`` will return, from the header."""
  if isinstance(item, Record):
    return image_io.probe_hw(image_io.NamedBytes(item.data(), item.name), max_side)
  return image_io.probe_hw(item, max_side)


def folder_images(folder: Path, flag: str) -> list[Path]:
  found = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                  and not f.name.startswith(".") and f.is_file()), key=lambda f: f.name)
  if not found:
    raise UsageError(f"{flag} {folder}: the folder holds no image files "
                     f"({' '.join(sorted(IMAGE_SUFFIXES))})")
  return found


def listed_paths(listing: Path, flag: str) -> list[Path]:
  """The paths a ``.txt`` list names (folders expanded), relative ones from the list's folder."""
  try:
    lines = listing.read_text(encoding="utf-8").splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UsageError(f"{flag} {listing}: not a readable text file of image paths ({one_line(e)})") from None
  paths = []
  for line in map(str.strip, lines):
    if line and not line.startswith("#"):
      path = listing.parent / Path(line).expanduser()
      paths += folder_images(path, flag) if path.is_dir() else [path]
  if not paths:
    raise UsageError(f"{flag} {listing}: the list names no images (one path a line)")
  return paths


def tfds_records(spec: str, data_dir: str | None, flag: str) -> list[Record]:
  """Every record of ``tfds:NAME[:SPLIT]``."""
  name, _, split = spec[len(TFDS_PREFIX):].partition(":")
  spec = f"{TFDS_PREFIX}{name}:{split or 'train'}"
  try:
    source = datasets.tfds_source(name, split or "train", data_dir, [TFDS_IMAGE_KEY])
  except datasets.DatasetError as e:
    raise UsageError(f"{flag} {e}") from None
  features = source.dataset_info.features
  if TFDS_IMAGE_KEY not in features:
    raise UsageError(f"{flag} {spec}: the dataset has no {TFDS_IMAGE_KEY!r} feature")
  if not len(source):
    raise UsageError(f"{flag} {spec}: the split holds no records")
  return [Record(spec, i, source) for i in range(len(source))]


def expand_inputs(args: Iterable[str | Path], flag: str, tfds_data_dir: str | None = None) -> list[Input]:
  """The items ``args`` name (see the module docstring), in order, without repeats."""
  items: list[Input] = []
  for arg in args:
    path = Path(arg)
    if str(arg).startswith(TFDS_PREFIX):
      items += tfds_records(str(arg), tfds_data_dir, flag)
    elif path.is_dir():
      items += folder_images(path, flag)
    elif path.suffix.lower() == LIST_SUFFIX and path.is_file():
      items += listed_paths(path, flag)
    elif path.exists():
      items.append(path)
    else:
      raise ImageError(f"{path}: no such file or folder")
  unique: dict[Any, Input] = {}
  for item in items:
    unique.setdefault(item if isinstance(item, Record) else item.resolve(), item)
  return list(unique.values())

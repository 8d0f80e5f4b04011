"""Image files in and out: every way a user's file can be odd becomes a float array or one ``ImageError``.

``load_image`` returns float32 ``[H, W, 3]`` RGB in [0, 1] for any file Pillow can decode:

- EXIF orientation is applied (a phone portrait comes out upright, width and height swapped);
- transparency (RGBA, LA, PA, palette or colour-key transparency) is composited on **white**: cut-out
  portraits are made to be shown on white (viewers, browsers, documents do so), and black would read to
  SegNet and the style transfer as a dark backdrop that is not in the picture;
- grayscale, bilevel, palette, CMYK and YCbCr become RGB; 16-bit ('I;16*') and 32-bit integer ('I') data
  are scaled from 65535 (not clipped to 255, as ``convert("RGB")`` would), float ('F') data is taken as
  [0, 1];
- resizing to a longest side of ``max_side`` is LANCZOS on float data (no 8-bit round trip), aspect kept.

Files are decoded fully (``Image.load``) inside the error handling, with
``ImageFile.LOAD_TRUNCATED_IMAGES`` left False, so truncated or corrupt files fail here and not half-grey later. The pixel count is checked
against an explicit limit from the header, before any decoding (PIL's own DecompressionBombWarning is
raised as an error too; where its global limit is lower, it wins).

``probe_hw`` reads the size ``load_image`` will return from the header alone (to plan batches before
decoding). ``atomic_path`` is the project's one atomic writer (a temporary file in the target folder,
synced, then ``os.replace``); ``save_image_atomic`` writes images through it and refuses to write over
any input; ``is_complete`` tells a whole file from a cut one and ``remove_partials`` clears the
temporary files a killed writer left. ``IMAGE_SUFFIXES`` is the one list of image suffixes and
``decode_uint8`` the training pipelines' reader, sharing ``load_image``'s decoding.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from jaxstyle.io.cli import one_line

MAX_PIXELS = 64_000_000   # 64 MP: a 9000×7000 photo fits; a crafted 100 000² header does not
MIN_SIDE = 16             # relu5_1 is 1/16 of the image: anything smaller has no features there
RESAMPLE_IMAGE = Image.Resampling.LANCZOS
RESAMPLE_MASK = Image.Resampling.BILINEAR   # no ringing at mask edges
PathLike = str | os.PathLike
PARTIAL = ".partial"   # in the names of ``atomic_path``'s temporary files
_PARTIAL_NAME = re.compile(rf"\.(?P<name>.+)\.[a-z0-9_]+{re.escape(PARTIAL)}(?P<suffix>\.[^.]*|)")
# The one list of accepted image suffixes (CLI folders, training folders, packing scripts).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm", ".pnm"})


class ImageError(Exception):
  """An image file that cannot be read or written; the message is one line naming the file."""


def is_image(path: PathLike) -> bool:
  return Path(path).suffix.lower() in IMAGE_SUFFIXES


class NamedBytes(bytes):
  """An encoded file held in memory (an upload, a dataset record) with the name its messages give it."""

  def __new__(cls, data: bytes, name: str):
    self = super().__new__(cls, data)
    self.name = name
    return self


def _name(source: PathLike | bytes) -> PathLike:
  """How messages name ``source``: its path, or the name of ``NamedBytes``."""
  return getattr(source, "name", "<image bytes>") if isinstance(source, bytes) else source


@contextlib.contextmanager
def _header(source: PathLike | bytes, max_pixels: int) -> Iterator[Image.Image]:
  """The opened, not yet decoded file (or bytes) with its pixel count checked against ``max_pixels``.

  Every error, also one raised by the caller's block (the decode), becomes one ``ImageError``.
  """
  path = _name(source) if isinstance(source, bytes) else Path(source)
  label = _name(source)
  if isinstance(path, Path) and not path.exists():
    raise ImageError(f"{label}: no such file")
  if isinstance(path, Path) and path.is_dir():
    raise ImageError(f"{label}: is a directory, not an image file")
  try:
    if (len(source) if isinstance(source, bytes) else path.stat().st_size) == 0:
      raise ImageError(f"{label}: is empty (0 bytes)")
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(source) if isinstance(source, bytes) else path) as img:   # header only
        w, h = img.size
        if w * h > max_pixels:
          raise ImageError(f"{label}: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the limit of "
                           f"{max_pixels / 1e6:g} MP (a decompression bomb or a very large image)")
        yield img
  except ImageError:
    raise
  except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
    raise ImageError(f"{label}: decompression bomb: {one_line(e)}") from None
  except Image.UnidentifiedImageError:
    raise ImageError(f"{label}: not an image file (Pillow cannot identify it)") from None
  except PermissionError:
    raise ImageError(f"{label}: permission denied") from None
  except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, ...
    raise ImageError(f"{label}: truncated or corrupt image ({one_line(e)})") from None


def _open(source: PathLike | bytes, max_pixels: int) -> Image.Image:
  """Opens and fully decodes a file (or its bytes) with EXIF orientation applied, or raises ``ImageError``."""
  with _header(source, max_pixels) as img:
    img.load()                    # full decode: truncated or corrupt data fails here
    return ImageOps.exif_transpose(img)   # a copy, upright


def _high_depth_gray(img: Image.Image) -> np.ndarray | None:
  """``[H, W]`` in [0, 1] for 16/32-bit integer and float images, else None."""
  if img.mode.startswith("I;16") or img.mode == "I":
    return np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
  if img.mode == "F":
    arr = np.asarray(img, np.float32)
    return np.where(np.isfinite(arr), np.clip(arr, 0.0, 1.0), arr)   # NaN/±inf kept for _rgba to refuse
  return None


def _rgba(img: Image.Image, path: PathLike) -> np.ndarray:
  """``[H, W, 4]`` float32 RGBA in [0, 1] of any mode (alpha 1 where the image has none).

  A float image with NaN or infinite pixels is refused: clipping keeps NaN, and the transfer would
  turn it into a black picture.
  """
  gray = _high_depth_gray(img)
  if gray is not None:
    bad = int(gray.size - np.count_nonzero(np.isfinite(gray)))
    if bad:
      raise ImageError(f"{path}: {bad} of {gray.size} pixels are NaN or infinite")
    return np.stack([gray, gray, gray, np.ones_like(gray)], axis=-1)
  try:
    converted = img.convert("RGBA" if img.has_transparency_data else "RGB")
  except (ValueError, OSError) as e:
    raise ImageError(f"{path}: unsupported colour mode {img.mode} ({one_line(e)})") from None
  arr = np.asarray(converted, np.float32) / 255.0
  if arr.shape[-1] == 3:
    arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
  return arr


def _resize(arr: np.ndarray, hw: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
  """Resizes float ``[H, W]`` or ``[H, W, C]`` channel by channel in float precision."""
  if arr.shape[:2] == tuple(hw):
    return arr
  channels = arr[..., None] if arr.ndim == 2 else arr
  out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c), "F").resize(hw[::-1], resample))
                  for c in np.moveaxis(channels, -1, 0)], axis=-1)
  out = np.clip(out, 0.0, 1.0)
  return out[..., 0] if arr.ndim == 2 else out


def longest_side_hw(hw: tuple[int, int], side: int) -> tuple[int, int]:
  """``hw`` scaled so its longer side is ``side``, aspect kept (rounded, at least 1)."""
  h, w = hw
  scale = side / max(h, w)
  return max(1, round(h * scale)), max(1, round(w * scale))


def shorter_side_hw(hw: tuple[int, int], side: int) -> tuple[int, int]:
  """``hw`` scaled so its shorter side is ``side``, aspect kept (rounded, no side below ``side``)."""
  h, w = hw
  scale = side / min(h, w)
  return max(side, round(h * scale)), max(side, round(w * scale))


def _check_side(hw: tuple[int, int], min_side: int, label: PathLike) -> None:
  if min(hw) < min_side:
    raise ImageError(f"{label}: {hw[1]}x{hw[0]} is too small (at least {min_side} px a side)")


def _loaded_hw(hw: tuple[int, int], max_side: int | None, min_side: int, label: PathLike) -> tuple[int, int]:
  """The size ``load_image`` gives an upright picture of ``hw`` (the longest side ``max_side``)."""
  if not max_side:
    return hw
  out = longest_side_hw(hw, max_side)
  if min(out) < min_side:
    raise ImageError(f"{label}: {hw[1]}x{hw[0]} resized to a longest side of {max_side} is "
                     f"{out[1]}x{out[0]}, too small (at least {min_side} px a side)")
  return out


def _open_checked(source: PathLike | bytes, max_pixels: int, min_side: int) -> Image.Image:
  img = _open(source, max_pixels)
  _check_side((img.height, img.width), min_side, _name(source))
  return img


def _on_white(img: Image.Image, path: PathLike) -> np.ndarray:
  """Float32 ``[H, W, 3]`` RGB in [0, 1], any transparency composited on white."""
  rgba = _rgba(img, path)
  return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def load_image(path: PathLike | bytes, max_side: int | None = None, *, max_pixels: int = MAX_PIXELS,
               min_side: int = MIN_SIDE) -> np.ndarray:
  """Float32 ``[H, W, 3]`` RGB in [0, 1]; longest side resized to ``max_side`` when given.

  ``path``: a file, or an encoded image's bytes (``NamedBytes`` to name them in messages: an upload, a
  dataset record).
  Raises ``ImageError`` (one line, naming the file) for anything that is not a usable image.
  """
  label = _name(path)
  img = _open_checked(path, max_pixels, min_side)
  hw = _loaded_hw((img.height, img.width), max_side, min_side, label)
  return np.ascontiguousarray(_resize(_on_white(img, label), hw, RESAMPLE_IMAGE), np.float32)


# EXIF orientations that turn the picture by 90° (``ImageOps.exif_transpose`` swaps its sides).
_QUARTER_TURNS = (5, 6, 7, 8)


def _header_orientation(img: Image.Image) -> int:
  """The EXIF orientation the header holds (1 when it holds none or cannot say without decoding)."""
  if img.format == "PNG" and "exif" not in img.info:
    return 1   # Pillow decodes a PNG's pixels to look for an eXIf chunk behind them
  try:
    return int(img.getexif().get(ExifTags.Base.Orientation, 1))
  except Exception:  # pylint: disable=broad-except   a bad EXIF block: the decode says what it makes of it
    return 1


def probe_hw(source: PathLike | bytes, max_side: int | None = None, *, max_pixels: int = MAX_PIXELS,
             min_side: int = MIN_SIDE) -> tuple[int, int]:
  """The ``(H, W)`` ``load_image(source, max_side)`` returns, read from the header (no pixels decoded).

  Refuses (``ImageError``) what the header already shows: not an image, too many pixels, too small. A
  truncated file passes here and fails in ``load_image``. Exact but for a PNG whose EXIF orientation
  is stored behind its pixels (only a decode reads it): its sides may come out swapped.
  """
  label = _name(source)
  with _header(source, max_pixels) as img:
    hw = (img.height, img.width)
    if _header_orientation(img) in _QUARTER_TURNS:
      hw = hw[::-1]
  _check_side(hw, min_side, label)
  return _loaded_hw(hw, max_side, min_side, label)


def decode_uint8(source: PathLike | bytes, shorter_side: int | None = None, *, upscale: bool = True,
                 max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
  """uint8 ``[H, W, 3]`` RGB of a file or encoded bytes, shorter side resized to ``shorter_side`` (only
  when larger unless ``upscale``).

  The training pipelines' reader: ``load_image``'s decoding and checks (EXIF orientation, transparency
  on white, high bit depths scaled), with 8-bit pictures without transparency resized in 8 bits (no
  float round trip for the common case). Raises ``ImageError``.
  """
  img = _open_checked(source, max_pixels, min_side)
  hw = (img.height, img.width)
  if shorter_side is not None and (upscale or min(hw) > shorter_side):
    hw = shorter_side_hw(hw, shorter_side)
  if img.mode in ("1", "L", "P", "RGB", "CMYK", "YCbCr") and not img.has_transparency_data:
    try:
      rgb = img.convert("RGB")
    except (ValueError, OSError) as e:
      raise ImageError(f"{_name(source)}: unsupported colour mode {img.mode} ({one_line(e)})") from None
    if rgb.size != hw[::-1]:
      rgb = rgb.resize(hw[::-1], RESAMPLE_IMAGE)
    return np.asarray(rgb, np.uint8)
  rgb = _resize(_on_white(img, _name(source)), hw, RESAMPLE_IMAGE)
  return np.round(rgb * 255.0).astype(np.uint8)


def load_mask(path: PathLike | bytes, hw: tuple[int, int], *, max_pixels: int = MAX_PIXELS,
              aspect_tolerance: float = 0.02) -> np.ndarray:
  """A user's person mask as float32 ``[H, W]`` in [0, 1] (1 = person), resized to ``hw``.

  ``path``: a file or its bytes (as ``load_image``).

  Any mode: the alpha channel where the file has a non-opaque one (a cut-out), else the luminance
  (white = person); 16-bit masks scaled from 65535. A mask whose aspect ratio differs from ``hw`` by more
  than ``aspect_tolerance`` (or a pixel of rounding) belongs to another picture and is refused.
  """
  img = _open(path, max_pixels)
  rgba = _rgba(img, _name(path))
  alpha = rgba[..., 3]
  if alpha.min() < 1.0:
    mask = alpha
  else:
    mask = rgba[..., :3] @ np.asarray([0.299, 0.587, 0.114], np.float32)
  h, w = hw
  expected_w = img.width * h / img.height
  if abs(expected_w - w) > max(1.0, aspect_tolerance * w):
    raise ImageError(f"{_name(path)}: mask is {img.width}x{img.height} but the content is {w}x{h} "
                     "(different aspect ratio: a mask of another picture?)")
  return np.ascontiguousarray(_resize(np.clip(mask, 0.0, 1.0), hw, RESAMPLE_MASK), np.float32)


def to_pil(image: np.ndarray | Image.Image) -> Image.Image:
  """``[H, W]`` (grayscale) or ``[H, W, 3|4]`` floats in [0, 1] (or uint8) as a PIL image."""
  if isinstance(image, Image.Image):
    return image
  arr = np.asarray(image)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
    raise ValueError(f"expected an [H, W], [H, W, 3] or [H, W, 4] image, got shape {arr.shape}")
  if arr.dtype != np.uint8:
    arr = np.round(np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
  return Image.fromarray(arr)


@functools.cache
def _file_mode() -> int:
  """Permissions of a newly created file under this process's umask (mkstemp makes 0600)."""
  umask = os.umask(0o022)
  os.umask(umask)
  return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
  """A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

  The one way this project writes a file: readers see the old file or the whole new one, never part of
  one; a failed block leaves no temporary file. The temporary name keeps ``path``'s suffix (muxers and
  image writers pick the format from it); the new file is synced to disk before the rename and gets the
  mode of any new file under this process's umask (not ``mkstemp``'s private 0600). Missing parent
  folders are created.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f"{PARTIAL}{path.suffix}")
  os.close(fd)
  try:
    yield Path(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.chmod(tmp, _file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def partial_target(name: str) -> str | None:
  """The file name a temporary file of ``atomic_path`` (``.NAME.XXXXXXXX.partial.SUFFIX``) was to
  become, or None for any other name."""
  match = _PARTIAL_NAME.fullmatch(name)
  return match["name"] if match and Path(match["name"]).suffix == match["suffix"] else None


def remove_partials(paths: Iterable[PathLike]) -> int:
  """Deletes the temporary files a killed ``atomic_path`` left for any of ``paths``; returns how many.

  Only those targets': another process may be writing other files into the same folder right now.
  """
  targets: dict[Path, set[str]] = {}
  for p in map(Path, paths):
    targets.setdefault(p.parent, set()).add(p.name)
  removed = 0
  for folder, names in targets.items():
    if not folder.is_dir():
      continue
    for entry in os.scandir(folder):
      if partial_target(entry.name) in names:
        with contextlib.suppress(FileNotFoundError):
          os.unlink(entry.path)
          removed += 1
  return removed


def is_complete(path: PathLike) -> bool:
  """Whether ``path`` is a whole image file (its header parses and its data checks out, e.g. every PNG
  chunk's CRC): a finished output, not a missing, empty or cut-short one."""
  try:
    with Image.open(path) as img:
      img.verify()
    return True
  except Exception:  # pylint: disable=broad-except   Pillow's verify raises many kinds
    return False


def file_ids(path: PathLike) -> set[tuple]:
  """What identifies the file ``path`` names: its resolved path and, when it exists, its (device, inode),
  which a hard link shares. Sets of them compare many paths at once (``same_file`` compares two)."""
  path = Path(path)
  try:
    ids: set[tuple] = {("path", path.resolve())}
    if path.exists():
      st = path.stat()
      ids.add(("inode", st.st_dev, st.st_ino))
    return ids
  except OSError:
    return set()


def same_file(a: PathLike, b: PathLike) -> bool:
  """Whether ``a`` and ``b`` name one file (same resolved path, or a hard link to it)."""
  return bool(file_ids(a) & file_ids(b))


def save_image_atomic(path: PathLike, image: np.ndarray | Image.Image, *,
                      inputs: Iterable[PathLike] = (), **save_kwargs) -> Path:
  """Writes ``image`` (see ``to_pil``) to ``path`` atomically; the format comes from the suffix.

  Refuses (``ImageError``) to write to any of ``inputs``. Missing parent folders are created.
  """
  path = Path(path)
  for p in inputs:
    if same_file(path, Path(p)):
      raise ImageError(f"{path}: refusing to overwrite an input image")
  fmt = Image.registered_extensions().get(path.suffix.lower())
  if fmt is None:
    raise ImageError(f"{path}: unknown image format for suffix {path.suffix!r} (use .png or .jpg)")
  img = to_pil(image)
  if fmt == "JPEG":
    img = img.convert("RGB") if img.mode not in ("L", "RGB") else img
    save_kwargs.setdefault("quality", 95)
  try:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
      img.save(f, format=fmt, **save_kwargs)
  except (OSError, ValueError) as e:
    raise ImageError(f"{path}: cannot write ({one_line(e)})") from None
  return path

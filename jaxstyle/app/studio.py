"""The studio's library: one warm process stylising pairs for browser tabs, a control change at a time.

    studio = Studio()                                   # the shipped weights
    out = studio.stylize("tab-1", Upload("me.jpg"), Upload("starry.jpg"), None, Settings(size=384))
    out = studio.stylize("tab-1", Upload("me.jpg"), Upload("starry.jpg"), None,
                         Settings(size=384, controls=Controls(alpha_person=0.3)))   # person region only

No web framework here (``app/studio_ui.py`` lays out the page; ``commands/studio.py`` starts it): every
picture the page shows is a ``Studio.stylize`` call, which Python and the page's API make alike.

- Weights load once (a ``Runner``) and its split programs (``portrait.make_split_programs``) stay
  compiled. A new (content, style[, mask]) pair at a size runs ``prepare`` (VGG, attention, identity
  transfer, SegNet);
  a control change runs only what it touches: one region's ``transfer`` (mix → decode) when that
  region's W1, W2 or α moved, and ``composite`` (preserve colour → feather → blend) always. The studio
  always prepares in portrait mode (SegNet included), so switching to plain is a control change too:
  plain SANet is the background region (``tests/test_portrait.py``).
- Inputs are pictures padded into shape buckets as the CLI pads them (``buckets.py``), so one size
  compiles about three sets of programs, and the persistent compile cache keeps them.
- Memory: uploads are read once into memory and their files deleted (``forget_under``; not copies of
  the bundled examples, ``keep``), and every
  upload, prepared pair and region image lives in one ``ByteLRU`` with a byte budget, keyed per tab;
  ``close_tab`` drops a tab's entries. A pair whose upload was deleted and then evicted asks for the
  file again. The web framework stores equal uploads as one file, in a folder named by their bytes
  (``content_address``), so several tabs may name the file the first of them deleted: such an upload is
  held once for every request naming its folder, until the budget evicts it (no tab's: ``close_tab``
  leaves it, as another tab's request for it may still be queued).
- Checks are the CLI's: ``request.check_settings`` for the settings, ``image_io`` for every file (not an
  image, truncated, a decompression bomb, NaN pixels, too small or too large), each refusal one
  ``ImageError`` / ``UsageError`` line naming the upload.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.app import request
from jaxstyle.app.request import Settings, UsageError
from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError, NamedBytes
from jaxstyle.program import buckets
from jaxstyle.program.runner import Runner, check_finite

DEFAULT_CACHE_BYTES = 1 << 30     # 1 GiB: ~30 prepared pairs at 512 px (about 30 MB each)
DEFAULT_QUEUE = 8                 # requests that may wait while one computes
DEFAULT_PAGE_SIZE = 384           # the page's starting size: a new pair in 3.4 s on a 2-core Xeon (README)
MAX_SIZE = 1024                   # longest side the page offers: a 1024 px pair takes ~10 s on 2 cores
MAX_UPLOAD_BYTES = 64 << 20       # an encoded picture larger than this is not read into memory
REGIONS = ("background", "person")


@dataclasses.dataclass(frozen=True)
class Upload:
  """A picture file given to the studio and the name to show for it (the browser's file name)."""
  path: str | os.PathLike
  name: str = ""

  def label(self) -> str:
    return self.name or Path(self.path).name


@dataclasses.dataclass(frozen=True)
class Result:
  """One render, cropped to the content: ``image`` and, in portrait mode, ``mask`` and the two region
  transfers (``background`` is plain SANet's picture). ``ran``: the programs this call ran, in order."""
  image: np.ndarray
  mask: np.ndarray | None
  background: np.ndarray
  person: np.ndarray | None
  content: np.ndarray
  style: np.ndarray
  ran: tuple[str, ...]


def check_settings(settings: Settings, max_size: int = MAX_SIZE) -> None:
  """The CLI's checks (``request.check_settings``) and the studio's own size cap; ``UsageError``."""
  request.check_settings(settings)
  if not image_io.MIN_SIDE <= settings.size <= max_size:
    raise UsageError(f"size must be {image_io.MIN_SIDE}..{max_size} here, not {settings.size}")


def tree_nbytes(tree: Any) -> int:
  """Bytes held by the arrays (and bytes) of a pytree."""
  return sum(len(x) if isinstance(x, bytes) else x.nbytes for x in jax.tree.leaves(tree))


class ByteLRU:
  """Least-recently-used entries whose sizes sum to at most ``budget`` bytes.

  ``put`` evicts the least recently used entries until the new one fits; an entry larger than the whole
  budget is not kept. Not thread-safe (``Studio`` holds a lock).
  """

  def __init__(self, budget: int):
    self.budget = budget
    self.nbytes = 0
    self._entries: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()

  def __len__(self) -> int:
    return len(self._entries)

  def __contains__(self, key: Hashable) -> bool:
    return key in self._entries

  def get(self, key: Hashable) -> Any | None:
    if key not in self._entries:
      return None
    self._entries.move_to_end(key)
    return self._entries[key][0]

  def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
    """Keeps ``value`` as the most recent entry; False (and nothing kept) when it exceeds the budget."""
    self.pop(key)
    if nbytes > self.budget:
      return False
    while self.nbytes + nbytes > self.budget:
      self.pop(next(iter(self._entries)))
    self._entries[key] = value, nbytes
    self.nbytes += nbytes
    return True

  def pop(self, key: Hashable) -> None:
    if key in self._entries:
      self.nbytes -= self._entries.pop(key)[1]

  def drop(self, match: Callable[[Hashable], bool]) -> None:
    for key in [k for k in self._entries if match(k)]:
      self.pop(key)


@dataclasses.dataclass
class Pair:
  """A prepared pair and the last transfer of each region, ``(W1, W2, α) row → images``."""
  prepared: dict[str, jax.Array]
  sizes: np.ndarray              # [batch, 4 or 6] valid sizes (content h, w, style h, w[, person's])
  style: np.ndarray              # the background's style as loaded (the page's preview)
  sides: tuple[int, int | None]  # the sides its styles were read at (``request.style_sides``)
  regions: dict[int, tuple[tuple[float, ...], jax.Array]] = dataclasses.field(default_factory=dict)

  def nbytes(self) -> int:
    """Its bytes with both regions rendered (what it will hold), so the budget is known on entry."""
    content = self.prepared["content"]
    return tree_nbytes(self.prepared) + self.style.nbytes + len(REGIONS) * content.size * 4


class Studio:
  """Pairs stylised for many tabs by one set of warm programs (module docstring)."""

  def __init__(self, weights: str | os.PathLike | None = None, *, dtype: str = "auto",
               cache_bytes: int = DEFAULT_CACHE_BYTES, max_size: int = MAX_SIZE,
               forget_under: str | os.PathLike | None = None, keep: Iterable[str | os.PathLike] = (),
               content_address: Callable[[bytes], str] | None = None,
               results_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print):
    if dtype not in request.DTYPES:
      raise UsageError(f"--dtype must be one of {', '.join(request.DTYPES)}, not {dtype!r}")
    self.runner = Runner.load(weights, dtype=dtype, log=log)
    self.cache = ByteLRU(cache_bytes)
    self.max_size = max_size
    self.forget_under = None if forget_under is None else Path(forget_under).resolve()
    # Copies of these files (the page's bundled examples, which the web framework serves from its
    # own copies) are never deleted.
    self._keep = {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in keep}
    self._digests: dict[tuple[str, str], str] = {}    # (tab, upload path) → digest, once read
    # The web framework's folder name for an upload's bytes (Gradio's seeded SHA-256, ``hash_bytes``):
    # every file it writes in such a folder has those bytes, so any request naming one may share them.
    self.content_address = content_address
    self.results_dir = None if results_dir is None else Path(results_dir)
    self._lock = threading.Lock()

  # --- inputs -------------------------------------------------------------------------------------

  def _read(self, tab: str, upload: Upload) -> tuple[str, NamedBytes]:
    """(digest, bytes) of an upload, read once: later calls naming the same file find it in memory
    (its file is deleted after reading when it lies under ``forget_under``)."""
    path = Path(upload.path)
    held = self._held(tab, path)
    if held is None:
      held = self._read_file(tab, path, upload.label())
    return held[0], NamedBytes(held[1], upload.label())

  def _held(self, tab: str, path: Path) -> tuple[str, bytes] | None:
    """(digest, bytes) of ``path`` already in memory: this tab's read of it, or any tab's of the shared
    upload its folder names. A shared upload's file written again since (the same bytes, uploaded
    again) leaves the disk as the first did."""
    digest = self._digests.get((tab, str(path)))
    data = None if digest is None else self.cache.get(("file", tab, digest))
    if data is not None:
      return digest, data
    key = self._shared_key(path)
    held = None if key is None else self.cache.get(key)
    if held is not None:
      self._forget(path)
    return held

  def _read_file(self, tab: str, path: Path, label: str) -> tuple[str, bytes]:
    """(digest, bytes) of the file ``path``, then held in memory (shared when its folder names its
    bytes, else this tab's) and, under ``forget_under``, deleted."""
    if not path.is_file():
      if (tab, str(path)) in self._digests or self._shared_key(path) is not None:
        raise ImageError(f"{label}: the upload was released from memory; upload it again")
      raise ImageError(f"{label}: no such file")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
      raise ImageError(f"{label}: {size / 2**20:.0f} MiB is larger than the "
                       f"{MAX_UPLOAD_BYTES >> 20} MiB accepted")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest in self._keep:           # a bundled example: its file stays, so nothing to share
      key = None
    else:
      key = self._shared_key(path, data)
      self._forget(path)
    if key is not None:
      self.cache.put(key, (digest, data), len(data))
    else:
      self._digests[tab, str(path)] = digest
      self.cache.put(("file", tab, digest), data, len(data))
    return digest, data

  def _shared_key(self, path: Path, data: bytes | None = None) -> tuple | None:
    """The memory key of an upload that any request naming ``path`` may share, or None: a file the
    studio deletes, in a folder named ``content_address`` of its bytes (checked on ``data``, so what is
    held under a folder's name is the one content a file there can have: never another picture).

    Why: equal uploads are one file (Gradio: ``route_utils.upload_fn`` writes each upload to
    ``<hash_bytes of its bytes>/<name>``), which the first request to read it deletes while others
    that sent the same bytes may still be queued (issue 41); they find the bytes here instead.
    """
    if self.content_address is None or not self._forgettable(path):
      return None
    if data is not None and self.content_address(data) != path.parent.name:
      return None
    return "upload", None, path.parent.name     # no tab's (``close_tab``): queued tabs may need it

  def _forgettable(self, path: Path) -> bool:
    return self.forget_under is not None and path.resolve().is_relative_to(self.forget_under)

  def _forget(self, path: Path) -> None:
    """Deletes an upload once read, when it lies under ``forget_under`` (never a bundled example)."""
    if self._forgettable(path):
      path.unlink(missing_ok=True)

  def _pair(self, tab: str, content: Upload, style: Upload, mask: Upload | None, settings: Settings
            ) -> tuple[Pair, list[str]]:
    """The prepared pair of these uploads at the settings' size and style scales (from the cache, or
    computed, or one region's style redone: ``_restyle``); the programs that ran."""
    keys = [self._read(tab, u) for u in (content, style) + ((mask,) if mask else ())]
    key = ("pair", tab, settings.size, *(digest for digest, _ in keys))
    sides, _ = request.style_sides(settings)
    pair = self.cache.get(key)
    if pair is not None:
      ran = self._restyle(pair, keys[1][1], sides)
      if ran:
        self.cache.put(key, pair, pair.nbytes())
      return pair, ran
    c = image_io.load_image(keys[0][1], settings.size)
    s, person = (None if side is None else image_io.load_image(keys[1][1], side) for side in sides)
    m = None if mask is None else image_io.load_mask(keys[2][1], c.shape[:2])
    hw = (buckets.content_bucket(c.shape[:2]),
          *(buckets.style_bucket(x.shape[:2]) for x in (s, person) if x is not None))
    batch = buckets.bucket_batch([c], [s], self.runner.batch_size(), hw, None if m is None else [m],
                                 None if person is None else [person])
    pair = Pair(self.runner.prepare(batch), batch.sizes, s, sides)
    self.cache.put(key, pair, pair.nbytes())
    return pair, ["prepare"]

  def _restyle(self, pair: Pair, style: NamedBytes, sides: tuple[int, int | None]) -> list[str]:
    """Redoes the attention of each region whose style side changed (a style-scale slider), and
    forgets that region's transfer; the programs that ran."""
    (background0, person0), (background, person) = pair.sides, sides
    changed = []
    if background != background0:
      changed.append(0)
    # The person's attention: its own style's, or the background's (person None) when the sides agree.
    if (person or background) != (person0 or background0) or (person is None) != (person0 is None):
      changed.append(1)
    for region in changed:
      side = (background, person)[region]
      if side is None:   # the person's scale is the background's again
        pair.prepared = self.runner.restyle(pair.prepared, None, None, region)
        continue
      s = image_io.load_image(style, side)
      padded = buckets.pad_items([s], buckets.style_bucket(s.shape[:2]), self.runner.batch_size())
      style_sizes = np.asarray([s.shape[:2]] * len(padded), np.int32)
      pair.prepared = self.runner.restyle(pair.prepared, padded, style_sizes, region)
      if region == 0:
        pair.style = s
    for region in changed:
      pair.regions.pop(region, None)
    pair.sides = sides
    return [f"restyle:{REGIONS[r]}" for r in changed]

  # --- rendering ----------------------------------------------------------------------------------

  def stylize(self, tab: str, content: Upload, style: Upload, mask: Upload | None,
              settings: Settings) -> Result:
    """The picture for these uploads and settings, computing only what changed since this tab's last
    call; raises ``ImageError`` / ``UsageError`` (one line) for a refused input."""
    check_settings(settings, self.max_size)
    if settings.mode == "plain" and mask is not None:
      raise UsageError("a person mask applies to portrait mode only")
    with self._lock:
      pair, ran = self._pair(tab, content, style, mask, settings)
      rows = settings.controls.as_array()
      for r in range(2 if settings.mode == "portrait" else 1):
        row = tuple(rows[r].tolist())
        if pair.regions.get(r, (None,))[0] != row:
          pair.regions[r] = row, self.runner.transfer(pair.prepared, rows[r:r + 1], region=r)
          ran.append(f"transfer:{REGIONS[r]}")
      # Plain mode shows the background alone; the person slot (never rendered yet: the background
      # again) only fills the composite's blend, which plain mode does not show.
      images = jnp.concatenate([pair.regions[r if r in pair.regions else 0][1] for r in range(2)])
      out = self.runner.composite(pair.prepared, images, settings.feather, settings.preserve_color)
      ran.append("composite")
      out = {k: buckets.crop(np.asarray(v[0]), tuple(pair.sizes[0, :2])) for k, v in out.items()}
      content_image = buckets.crop(np.asarray(pair.prepared["content"][0]), tuple(pair.sizes[0, :2]))
    check_finite(out, Path(content.label()))
    portrait_mode = settings.mode == "portrait"
    return Result(image=out["image"] if portrait_mode else out["background"],
                  mask=out["mask"] if portrait_mode else None, background=out["background"],
                  person=out["person"] if portrait_mode else None, content=content_image,
                  style=pair.style, ran=tuple(ran))

  def style_image(self, tab: str, style: Upload, side: int | None) -> np.ndarray:
    """The picture ``style`` at longest side ``side`` (None: as is), its upload read once as every
    upload is (a clip's or the camera's style; ``ImageError`` for a refused file)."""
    with self._lock:
      _, data = self._read(tab, style)
    return image_io.load_image(data, side)

  def save_png(self, image: np.ndarray, name: str = "jaxstyle.png") -> Path:
    """A lossless PNG of ``image`` in its own folder under ``results_dir`` (the page's download; the
    system's temporary folder when not set)."""
    if self.results_dir is None:
      self.results_dir = Path(tempfile.mkdtemp(prefix="jaxstyle-studio-"))
    self.results_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=self.results_dir))
    return image_io.save_image_atomic(folder / name, image)

  def close_tab(self, tab: str) -> None:
    """Drops everything a closed tab held."""
    with self._lock:
      self.cache.drop(lambda key: key[1] == tab)
      for key in [k for k in self._digests if k[0] == tab]:
        del self._digests[key]

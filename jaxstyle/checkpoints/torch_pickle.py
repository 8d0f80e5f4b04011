"""A torch-free, code-free reader of PyTorch checkpoint files (``torch.save`` output).

``load(path)`` returns the saved object with every tensor as a numpy array: state dicts come back as
(Ordered)dicts of arrays. Both on-disk formats are read:

- zip (torch >= 1.6): ``<archive>/data.pkl`` is the pickle; each storage is the raw record
  ``<archive>/data/<key>``, in the byte order named by ``<archive>/byteorder`` (little when absent).
- legacy (``_use_new_zipfile_serialization=False`` and every torch < 1.6): five pickles/blocks in a row
  — the magic number, the protocol version (1001), a ``sys_info`` dict, the object, then the list of
  storage keys — followed, per key in that order, by an int64 little-endian element count and the raw
  little-endian elements.

Every pickle is first walked by ``pickle_scan.scan_pickle`` (depth and memo-expansion limits), then read
by ``torch_unpickler.SafeUnpickler``, which builds only tensors and containers. Storages are 1-D numpy
buffers whose sizes are checked against the file. As with ``torch.load``, tensors that share a storage
in the file share memory in the result and non-contiguous views keep their strides
(``np.ascontiguousarray`` when needed).

Limits, all checked before anything is allocated (a checkpoint is as hostile as any other download):

- zip members must be stored, not compressed, as ``torch.save`` writes them, so every byte read exists
  in the file (a 1 MB deflated member cannot become 1 GiB); every storage's size must match its record;
- the scan's limits on nesting and on objects counted through memo references (``pickle_scan``);
- ``strided_view``'s bounds on each tensor, and all tensors of a file together at most ``VIEW_BUDGET``
  times the bytes of its storages: views on a shared storage cannot multiply memory when materialised;
- error messages show objects through ``short_repr`` (bounded depth and length).

So peak memory is a small multiple of the file's size (``tests/test_hostile_checkpoints.py`` runs each
case under ``RLIMIT_AS``). Anything malformed is a ``TorchFileError`` (or ``UnsafePickleError``) with a
one-line message.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np

from jaxstyle.checkpoints.pickle_scan import TorchFileError, UnsafePickleError, scan_pickle, short_repr
from jaxstyle.checkpoints.torch_unpickler import SafeUnpickler

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# Bytes of all tensors (each reference counted) per byte of storage: 1 when every tensor owns its
# storage, a little more for saved views (x and x.t()).
VIEW_BUDGET = 4


def _safe_unpickle(file: BinaryIO, load_storage: Callable | None = None) -> Any:
  """``scan_pickle`` then ``SafeUnpickler`` on the same bytes of a seekable ``file``."""
  start = file.tell()
  scan_pickle(file)
  file.seek(start)
  return SafeUnpickler(file, load_storage).load()


def tensor_bytes(obj: Any, limit: int) -> int:
  """Bytes of every tensor in ``obj`` (a result of ``SafeUnpickler``), each reference counted; stops
  early once past ``limit``. Iterative: the scan bounds the number of references it can visit."""
  total, todo = 0, [obj]
  while todo and total <= limit:
    x = todo.pop()
    if isinstance(x, np.ndarray):
      total += x.nbytes
    elif isinstance(x, dict):
      todo.extend(x.keys())
      todo.extend(x.values())
    elif isinstance(x, (list, tuple, set, frozenset)):
      todo.extend(x)
  return total


def _check_views(obj: Any, storage_bytes: int) -> Any:
  limit = VIEW_BUDGET * storage_bytes + (1 << 20)
  if tensor_bytes(obj, limit) > limit:
    raise TorchFileError(f"the checkpoint's tensors reference more than {VIEW_BUDGET}× the "
                         f"{storage_bytes} bytes its storages hold (one storage viewed many times)")
  return obj


# --- Reading -----------------------------------------------------------------------------------------


def from_bytes(data: bytes, dtype: np.dtype, byteorder: str = "little") -> np.ndarray:
  """A writable 1-D array of ``dtype`` from raw element bytes in ``byteorder``."""
  array = np.frombuffer(bytearray(data), np.uint8).view(dtype)
  return array.byteswap(inplace=True) if byteorder != sys.byteorder and dtype.itemsize > 1 else array


def load(file: str | os.PathLike | BinaryIO) -> Any:
  """Reads a ``torch.save`` file (zip or legacy format) into the saved object with numpy tensors.

  Raises ``UnsafePickleError`` for a pickle that names code or exceeds the limits, ``TorchFileError``
  for anything else malformed (both one line).
  """
  if isinstance(file, (str, os.PathLike)):
    with open(file, "rb") as f:
      return load(f)
  try:
    head = file.read(4)
    file.seek(-len(head), io.SEEK_CUR)
    if head.startswith(b"PK\x03\x04"):
      with zipfile.ZipFile(file) as zf:
        return _load_zip(zf)
    if head[:1] == b"\x80":
      return _load_legacy(file)
  except (TorchFileError, UnsafePickleError):
    raise
  # What a malformed file can still raise past the checks: the unpickler (UnpicklingError, EOFError,
  # struct.error), zipfile (BadZipFile, EOFError), a wrong type or key inside a record.
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, struct.error, ValueError, TypeError,
          KeyError, IndexError, AttributeError, OverflowError) as e:
    raise TorchFileError(f"malformed checkpoint ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None
  raise TorchFileError(
      "not a PyTorch checkpoint: expected a zip archive or a legacy pickle stream (tar-format files "
      "of torch < 0.4 are not supported)")


def _stored_member(zf: zipfile.ZipFile, name: str, size: int | None = None) -> zipfile.ZipInfo:
  """The ``ZipInfo`` of an uncompressed member that fits in the archive (and holds ``size`` bytes)."""
  try:
    info = zf.getinfo(name)
  except KeyError:
    raise TorchFileError(f"zip member {short_repr(name)} is missing") from None
  if info.compress_type != zipfile.ZIP_STORED:
    raise TorchFileError(f"zip member {short_repr(name)} is compressed (method {info.compress_type}); "
                         "torch.save stores members uncompressed, and inflating is refused so a small "
                         "file cannot become a huge one")
  archive = zf.fp.seek(0, io.SEEK_END)
  if info.file_size != info.compress_size or info.header_offset + info.file_size > archive:
    raise TorchFileError(f"zip member {short_repr(name)} claims {info.file_size} bytes, more than the "
                         f"archive of {archive} holds")
  if size is not None and info.file_size != size:
    raise TorchFileError(f"zip member {short_repr(name)} holds {info.file_size} bytes, the pickle says "
                         f"{size}")
  return info


def _load_zip(zf: zipfile.ZipFile) -> Any:
  names = zf.namelist()
  if not names:
    raise TorchFileError("empty zip archive")
  prefix = names[0].split("/", 1)[0] + "/"
  if prefix + "data.pkl" not in names:
    raise TorchFileError(f"zip archive has no {short_repr(prefix)}data.pkl: not a torch.save file")
  byteorder = "little"
  if prefix + "byteorder" in names:
    byteorder = zf.read(_stored_member(zf, prefix + "byteorder")).decode("ascii", "replace")
    if byteorder not in ("little", "big"):
      raise TorchFileError(f"unknown byteorder record {short_repr(byteorder)}")
  loaded: dict[str, np.ndarray] = {}

  def load_storage(storage_type, key, location, numel, view_metadata):
    del location, view_metadata
    dtype = storage_type.dtype
    if key in loaded:
      if loaded[key].dtype != dtype:
        raise TorchFileError(f"storage {short_repr(key)} is referenced as {loaded[key].dtype} and {dtype}")
      return loaded[key]
    info = _stored_member(zf, f"{prefix}data/{key}", numel * dtype.itemsize)
    loaded[key] = from_bytes(zf.read(info), dtype, byteorder)
    return loaded[key]

  data = zf.read(_stored_member(zf, prefix + "data.pkl"))
  obj = _safe_unpickle(io.BytesIO(data), load_storage)
  return _check_views(obj, sum(b.nbytes for b in loaded.values()))


def _load_legacy(f: BinaryIO) -> Any:
  """Reads the legacy format; storages are filled in after the object pickle, as torch does."""
  start = f.tell()
  storages = _LegacyStorages(file_size=f.seek(0, io.SEEK_END) - start)
  f.seek(start)
  magic = _safe_unpickle(f)
  if magic != LEGACY_MAGIC:
    raise TorchFileError(f"bad magic number {short_repr(magic)}: not a legacy torch.save file")
  protocol = _safe_unpickle(f)
  if protocol != LEGACY_PROTOCOL:
    raise TorchFileError(f"unsupported legacy protocol version {short_repr(protocol)}")
  if not isinstance(_safe_unpickle(f), dict):   # sys_info; storages are little-endian anyway
    raise TorchFileError("bad legacy sys_info record")
  obj = _safe_unpickle(f, storages)
  storages.fill(f, _safe_unpickle(f))
  return _check_views(obj, sum(b.nbytes for b in storages.buffers.values()))


class _LegacyStorages:
  """The ``load_storage`` of a legacy file: zeroed buffers while the object is unpickled (their sizes
  bounded by the file's), filled from the records that follow by ``fill``."""

  def __init__(self, file_size: int):
    self.file_size = file_size
    self.buffers: dict[str, np.ndarray] = {}
    self.views: dict[str, np.ndarray] = {}

  def __call__(self, storage_type, key, location, numel, view_metadata) -> np.ndarray:
    del location
    dtype, buffers = storage_type.dtype, self.buffers
    if key not in buffers:
      if numel * dtype.itemsize + sum(b.nbytes for b in buffers.values()) > self.file_size:
        raise TorchFileError(f"storage {short_repr(key)} claims {numel} × {dtype}, more than the file "
                             "holds")
      buffers[key] = np.zeros(numel, dtype)
    elif buffers[key].dtype != dtype:
      raise TorchFileError(f"storage {short_repr(key)} is referenced as {buffers[key].dtype} and {dtype}")
    if view_metadata is None:
      return buffers[key]
    # torch < 0.4 storage views: (view_key, offset, size) into the root storage.
    if not isinstance(view_metadata, tuple) or len(view_metadata) != 3:
      raise TorchFileError(f"bad storage view {short_repr(view_metadata)}")
    view_key, offset, size = view_metadata
    if view_key not in self.views:
      if type(offset) is not int or type(size) is not int or not 0 <= offset <= offset + size <= numel:
        raise TorchFileError(f"bad storage view {short_repr(view_metadata)}")
      self.views[view_key] = buffers[key][offset:offset + size]
    return self.views[view_key]

  def fill(self, f: BinaryIO, keys: Any) -> None:
    """Reads the storage records, in the order of the pickled key list ``keys``."""
    if not isinstance(keys, list) or set(keys) != set(self.buffers):
      raise TorchFileError("the storage key list does not match the storages the pickle uses")
    for key in keys:
      numel = np.frombuffer(f.read(8), "<i8")
      buf = self.buffers[key]
      if numel.size != 1 or int(numel[0]) != buf.size:
        raise TorchFileError(f"storage {short_repr(key)}: size record does not match its persistent id")
      nbytes = buf.size * buf.dtype.itemsize
      data = f.read(nbytes)
      if len(data) != nbytes:
        raise TorchFileError(f"storage {short_repr(key)} is truncated")
      buf[...] = from_bytes(data, buf.dtype)

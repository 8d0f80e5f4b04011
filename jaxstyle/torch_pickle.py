"""A torch-free, code-free reader of PyTorch checkpoint files (``torch.save`` output).

``load(path)`` returns the saved object with every tensor as a numpy array: state dicts come back as
(Ordered)dicts of arrays. Both on-disk formats are read:

- zip (torch >= 1.6): ``<archive>/data.pkl`` is the pickle; each storage is the raw record
  ``<archive>/data/<key>``, in the byte order named by ``<archive>/byteorder`` (little when absent).
- legacy (``_use_new_zipfile_serialization=False`` and every torch < 1.6): five pickles/blocks in a row
  — the magic number, the protocol version (1001), a ``sys_info`` dict, the object, then the list of
  storage keys — followed, per key in that order, by an int64 little-endian element count and the raw
  little-endian elements.

Pickles are read by ``SafeUnpickler``, whose ``find_class`` resolves only ``ALLOWED_GLOBALS`` to
inert stand-ins defined here (no torch, no import of the named module); any other global — ``os.system``,
``builtins.eval``, a ``torch.nn`` module class, numpy's reconstruct helpers — raises ``UnsafePickleError``
naming it, before anything is called. Storages arrive through ``persistent_load`` as 1-D numpy buffers
whose sizes are checked against the file; tensors are ``as_strided`` views on them after checking that
offset, sizes and strides stay inside the buffer. As with ``torch.load``, tensors that share a storage
in the file share memory in the result and non-contiguous views keep their strides (``np.ascontiguousarray``
when needed). Backward hooks, ``requires_grad`` and tensor metadata are accepted and dropped.
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Element types of the typed ``torch.<Name>Storage`` classes (also ``torch.cuda.<Name>Storage``: the data
# in the file is on the host either way).
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
}
# ``torch.<dtype>`` globals: torch >= 2.1 pickles them for the dtypes that have no typed storage class
# (``_rebuild_tensor_v3`` over a ``torch.UntypedStorage``). Those numpy or ml_dtypes can hold.
TORCH_DTYPES = {
    "float64": np.dtype("float64"), "float32": np.dtype("float32"), "float16": np.dtype("float16"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16), "int64": np.dtype("int64"), "int32": np.dtype("int32"),
    "int16": np.dtype("int16"), "int8": np.dtype("int8"), "uint8": np.dtype("uint8"),
    "bool": np.dtype("bool"), "uint16": np.dtype("uint16"), "uint32": np.dtype("uint32"),
    "uint64": np.dtype("uint64"), "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
}


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle names a global outside ``ALLOWED_GLOBALS`` (or misuses an allowed one)."""


class TorchFileError(ValueError):
  """The file is not a well-formed PyTorch checkpoint of a supported kind."""


class _Inert:
  """Base of the stand-ins ``find_class`` returns: immutable, no ``__dict__``, and the pickle's BUILD
  opcode (which calls ``__setstate__``) is refused."""
  __slots__ = ()

  def __setattr__(self, name, value):
    raise UnsafePickleError(f"pickle tried to set {name!r} on {self!r}")

  def __delattr__(self, name):
    raise UnsafePickleError(f"pickle tried to delete {name!r} on {self!r}")

  def __setstate__(self, state):
    raise UnsafePickleError(f"pickle tried to set state on {self!r}")


class _TypeMarker(_Inert):
  """A global that only names an element type; calling it is refused."""
  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype):
    object.__setattr__(self, "name", name)
    object.__setattr__(self, "dtype", dtype)

  def __repr__(self):
    return f"torch.{self.name}"

  def __call__(self, *args):
    raise UnsafePickleError(f"pickle tried to call {self!r}")


class StorageType(_TypeMarker):
  """``torch.<Name>Storage``: the element type inside a storage's persistent id."""
  __slots__ = ()


class TorchDtype(_TypeMarker):
  """``torch.<dtype>``: the element type argument of ``_rebuild_tensor_v3``."""
  __slots__ = ()


class _Function(_Inert):
  """An allow-listed callable global, e.g. ``torch._utils._rebuild_tensor_v2``, run as our ``fn``."""
  __slots__ = ("name", "fn")

  def __init__(self, name: str, fn: Callable):
    object.__setattr__(self, "name", name)
    object.__setattr__(self, "fn", fn)

  def __repr__(self):
    return self.name

  def __call__(self, *args):
    return self.fn(*args)


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
  if not isinstance(x, (tuple, list)) or not all(type(v) is int for v in x):
    raise UnsafePickleError(f"tensor {what} must be a tuple of ints, got {x!r}")
  return tuple(x)


def strided_view(storage: np.ndarray, offset: int, size: tuple, stride: tuple,
                 dtype: np.dtype | None = None) -> np.ndarray:
  """The tensor ``storage[offset + Σ i_k·stride_k]`` of shape ``size`` as a numpy view, bounds-checked.

  ``dtype`` reinterprets an untyped (uint8) storage first; offset and strides count elements of it.
  """
  if not isinstance(storage, np.ndarray) or storage.ndim != 1:
    raise UnsafePickleError(f"tensor storage must come from a persistent id, got {type(storage)}")
  if dtype is not None and dtype != storage.dtype:
    if storage.dtype != np.uint8 or storage.size % dtype.itemsize:
      raise TorchFileError(f"cannot view a {storage.dtype} storage of {storage.size} as {dtype}")
    storage = storage.view(dtype)
  size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
  if type(offset) is not int or offset < 0 or len(size) != len(stride):
    raise TorchFileError(f"bad tensor layout: offset {offset!r}, size {size}, stride {stride}")
  if any(n < 0 for n in size) or any(s < 0 for s in stride):
    raise TorchFileError(f"negative size or stride: size {size}, stride {stride}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise TorchFileError(f"tensor (offset {offset}, size {size}, stride {stride}) reads element "
                         f"{last} of a storage of {storage.size}")
  item = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * item for s in stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
  return strided_view(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  return strided_view(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
  if not isinstance(dtype, TorchDtype):
    raise UnsafePickleError(f"_rebuild_tensor_v3 dtype must be a torch dtype, got {dtype!r}")
  return strided_view(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  if not isinstance(data, np.ndarray):
    raise UnsafePickleError(f"_rebuild_parameter data must be a tensor, got {type(data)}")
  return data


def _latin1_encode(text, encoding):
  """``_codecs.encode`` as pickle protocol 2 uses it for ``bytes`` objects, and nothing else."""
  if type(text) is not str or encoding not in ("latin1", "latin-1"):
    raise UnsafePickleError(f"_codecs.encode is allowed only as str -> latin1 bytes, not {encoding!r}")
  return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
  allowed: dict[tuple[str, str], Any] = {
      ("collections", "OrderedDict"): OrderedDict,
      ("_codecs", "encode"): _Function("_codecs.encode", _latin1_encode),
  }
  for name, fn in [("_rebuild_tensor", _rebuild_tensor), ("_rebuild_tensor_v2", _rebuild_tensor_v2),
                   ("_rebuild_tensor_v3", _rebuild_tensor_v3),
                   ("_rebuild_parameter", _rebuild_parameter)]:
    allowed["torch._utils", name] = _Function(f"torch._utils.{name}", fn)
  for name, dtype in STORAGE_DTYPES.items():
    allowed["torch", name] = StorageType(name, dtype)
    allowed["torch.cuda", name] = StorageType(f"cuda.{name}", dtype)
  for module in ("torch", "torch.storage"):      # byte storages of the dtypes in TORCH_DTYPES only
    allowed[module, "UntypedStorage"] = StorageType("UntypedStorage", np.dtype("uint8"))
  for name, dtype in TORCH_DTYPES.items():
    allowed["torch", name] = TorchDtype(name, dtype)
  return allowed


# (module, name) -> the stand-in returned for it. Everything else is refused.
ALLOWED_GLOBALS = _allowed_globals()


class SafeUnpickler(pickle.Unpickler):
  """Unpickler that resolves only ``ALLOWED_GLOBALS`` and hands storages to ``load_storage``.

  ``load_storage(storage_type, key, location, numel, view_metadata)`` returns the 1-D numpy buffer of a
  persistent id ``('storage', storage_type, key, location, numel[, view_metadata])``.
  """

  def __init__(self, file: BinaryIO, load_storage: Callable | None = None):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    try:
      return ALLOWED_GLOBALS[module, name]
    except (KeyError, TypeError):
      raise UnsafePickleError(
          f"refusing to load global {module}.{name}: not in jaxstyle.torch_pickle.ALLOWED_GLOBALS "
          "(a checkpoint should hold tensors and containers only)") from None

  def persistent_load(self, pid: Any) -> Any:
    if (self._load_storage is None or not isinstance(pid, tuple) or len(pid) not in (5, 6)
        or pid[0] not in ("storage", b"storage")):
      raise UnsafePickleError(f"unsupported persistent id {pid!r:.200}")
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, StorageType):
      raise UnsafePickleError(f"persistent id storage type {storage_type!r:.100} is not a torch storage")
    if isinstance(key, bytes):
      key = key.decode("ascii")
    if not isinstance(key, str) or type(numel) is not int or numel < 0:
      raise TorchFileError(f"bad storage persistent id {pid!r:.200}")
    return self._load_storage(storage_type, key, location, numel, pid[5] if len(pid) == 6 else None)


def from_bytes(data: bytes, dtype: np.dtype, byteorder: str = "little") -> np.ndarray:
  """A writable 1-D array of ``dtype`` from raw element bytes in ``byteorder``."""
  array = np.frombuffer(bytearray(data), np.uint8).view(dtype)
  return array.byteswap() if byteorder != sys.byteorder and dtype.itemsize > 1 else array


def load(file: str | os.PathLike | BinaryIO) -> Any:
  """Reads a ``torch.save`` file (zip or legacy format) into the saved object with numpy tensors."""
  if isinstance(file, (str, os.PathLike)):
    with open(file, "rb") as f:
      return load(f)
  head = file.read(4)
  file.seek(-len(head), io.SEEK_CUR)
  if head.startswith(b"PK\x03\x04"):
    with zipfile.ZipFile(file) as zf:
      return _load_zip(zf)
  if head[:1] == b"\x80":
    return _load_legacy(file)
  raise TorchFileError(
      "not a PyTorch checkpoint: expected a zip archive or a legacy pickle stream (tar-format files "
      "of torch < 0.4 are not supported)")


def _load_zip(zf: zipfile.ZipFile) -> Any:
  names = zf.namelist()
  if not names:
    raise TorchFileError("empty zip archive")
  prefix = names[0].split("/", 1)[0] + "/"
  if prefix + "data.pkl" not in names:
    raise TorchFileError(f"zip archive has no {prefix}data.pkl: not a torch.save file")
  byteorder = "little"
  if prefix + "byteorder" in names:
    byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace")
    if byteorder not in ("little", "big"):
      raise TorchFileError(f"unknown byteorder record {byteorder!r}")
  loaded: dict[str, np.ndarray] = {}

  def load_storage(storage_type, key, location, numel, view_metadata):
    del location, view_metadata
    dtype = storage_type.dtype
    if key in loaded:
      if loaded[key].dtype != dtype:
        raise TorchFileError(f"storage {key} is referenced as {loaded[key].dtype} and {dtype}")
      return loaded[key]
    try:
      info = zf.getinfo(f"{prefix}data/{key}")
    except KeyError:
      raise TorchFileError(f"storage record {prefix}data/{key} is missing") from None
    if info.file_size != numel * dtype.itemsize:
      raise TorchFileError(f"storage {key}: record holds {info.file_size} bytes, the pickle says "
                           f"{numel} × {dtype}")
    loaded[key] = from_bytes(zf.read(info), dtype, byteorder)
    return loaded[key]

  with zf.open(prefix + "data.pkl") as f:
    return SafeUnpickler(io.BytesIO(f.read()), load_storage).load()


def _load_legacy(f: BinaryIO) -> Any:
  """Reads the legacy format; storages are filled in after the object pickle, as torch does."""
  start = f.tell()
  file_size = f.seek(0, io.SEEK_END) - start
  f.seek(start)
  magic = SafeUnpickler(f).load()
  if magic != LEGACY_MAGIC:
    raise TorchFileError(f"bad magic number {magic!r}: not a legacy torch.save file")
  protocol = SafeUnpickler(f).load()
  if protocol != LEGACY_PROTOCOL:
    raise TorchFileError(f"unsupported legacy protocol version {protocol!r}")
  if not isinstance(SafeUnpickler(f).load(), dict):   # sys_info; storages are little-endian anyway
    raise TorchFileError("bad legacy sys_info record")

  buffers: dict[str, np.ndarray] = {}
  views: dict[str, np.ndarray] = {}

  def load_storage(storage_type, key, location, numel, view_metadata):
    del location
    dtype = storage_type.dtype
    if key not in buffers:
      if numel * dtype.itemsize + sum(b.nbytes for b in buffers.values()) > file_size:
        raise TorchFileError(f"storage {key} claims {numel} × {dtype}, more than the file holds")
      buffers[key] = np.zeros(numel, dtype)
    elif buffers[key].dtype != dtype:
      raise TorchFileError(f"storage {key} is referenced as {buffers[key].dtype} and {dtype}")
    if view_metadata is None:
      return buffers[key]
    # torch < 0.4 storage views: (view_key, offset, size) into the root storage.
    view_key, offset, size = view_metadata
    if view_key not in views:
      if type(offset) is not int or type(size) is not int or not 0 <= offset <= offset + size <= numel:
        raise TorchFileError(f"bad storage view {view_metadata!r}")
      views[view_key] = buffers[key][offset:offset + size]
    return views[view_key]

  obj = SafeUnpickler(f, load_storage).load()
  keys = SafeUnpickler(f).load()
  if not isinstance(keys, list) or set(keys) != set(buffers):
    raise TorchFileError("the storage key list does not match the storages the pickle uses")
  for key in keys:
    numel = np.frombuffer(f.read(8), "<i8")
    buf = buffers[key]
    if numel.size != 1 or int(numel[0]) != buf.size:
      raise TorchFileError(f"storage {key}: size record does not match its persistent id")
    nbytes = buf.size * buf.dtype.itemsize
    data = f.read(nbytes)
    if len(data) != nbytes:
      raise TorchFileError(f"storage {key} is truncated")
    buf[...] = from_bytes(data, buf.dtype)
  return obj

"""What a PyTorch checkpoint's pickle may build, and the unpickler that builds only that.

``SafeUnpickler.find_class`` resolves only ``ALLOWED_GLOBALS`` to inert stand-ins defined here (no
torch, no import of the named module); any other global — ``os.system``, ``builtins.eval``, a
``torch.nn`` module class, numpy's reconstruct helpers — raises ``UnsafePickleError`` naming it, before
anything is called. Storages arrive through ``persistent_load`` (the file reader supplies them); tensors
are ``as_strided`` views on them after checking that offset, sizes and strides stay inside the buffer
(``strided_view``): a tensor has at most as many elements as its storage and a stride of 0 only over a
dimension of size ≤ 1. Backward hooks, ``requires_grad`` and tensor metadata are accepted and dropped.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

from jaxstyle.checkpoints.pickle_scan import TorchFileError, UnsafePickleError, short_repr

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


class _Inert:
  """Base of the stand-ins ``find_class`` returns: immutable, no ``__dict__``, and the pickle's BUILD
  opcode (which calls ``__setstate__``) is refused."""
  __slots__ = ()

  def __setattr__(self, name, value):
    raise UnsafePickleError(f"pickle tried to set {short_repr(name)} on {self!r}")

  def __delattr__(self, name):
    raise UnsafePickleError(f"pickle tried to delete {short_repr(name)} on {self!r}")

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
    raise UnsafePickleError(f"tensor {what} must be a tuple of ints, got {short_repr(x)}")
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
  layout = f"offset {short_repr(offset)}, size {short_repr(size)}, stride {short_repr(stride)}"
  if type(offset) is not int or offset < 0 or len(size) != len(stride):
    raise TorchFileError(f"bad tensor layout: {layout}")
  if any(n < 0 for n in size) or any(s < 0 for s in stride):
    raise TorchFileError(f"negative size or stride: {layout}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  # More elements than the storage means elements are repeated: once materialised (astype, a copy)
  # a 5 KB file would become gigabytes. torch.save keeps an expand()ed tensor's stride 0; save
  # tensor.contiguous() instead.
  if any(s == 0 and n > 1 for n, s in zip(size, stride)):
    raise TorchFileError(f"tensor has stride 0 over a dimension of size > 1 ({layout}): an expanded "
                         "view; save tensor.contiguous()")
  if int(np.prod(size, dtype=object)) > storage.size:
    raise TorchFileError(f"tensor ({layout}) has more elements than its storage of {storage.size}")
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise TorchFileError(f"tensor ({layout}) reads element {last} of a storage of {storage.size}")
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
    raise UnsafePickleError(f"_rebuild_tensor_v3 dtype must be a torch dtype, got {short_repr(dtype)}")
  return strided_view(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  if not isinstance(data, np.ndarray):
    raise UnsafePickleError(f"_rebuild_parameter data must be a tensor, got {type(data).__name__}")
  return data


def _latin1_encode(text, encoding):
  """``_codecs.encode`` as pickle protocol 2 uses it for ``bytes`` objects, and nothing else."""
  if type(text) is not str or encoding not in ("latin1", "latin-1"):
    raise UnsafePickleError(f"_codecs.encode is allowed only as str -> latin1 bytes, not "
                            f"{short_repr(encoding)}")
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
          f"refusing to load global {short_repr(module)[1:-1]}.{short_repr(name)[1:-1]}: not in "
          "jaxstyle.checkpoints.torch_unpickler.ALLOWED_GLOBALS (a checkpoint should hold tensors and containers "
          "only)") from None

  def persistent_load(self, pid: Any) -> Any:
    if (self._load_storage is None or not isinstance(pid, tuple) or len(pid) not in (5, 6)
        or pid[0] not in ("storage", b"storage")):
      raise UnsafePickleError(f"unsupported persistent id {short_repr(pid)}")
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, StorageType):
      raise UnsafePickleError(f"persistent id storage type {short_repr(storage_type)} is not a torch "
                              "storage")
    if isinstance(key, bytes):
      key = key.decode("ascii")
    if not isinstance(key, str) or type(numel) is not int or numel < 0:
      raise TorchFileError(f"bad storage persistent id {short_repr(pid)}")
    return self._load_storage(storage_type, key, location, numel, pid[5] if len(pid) == 6 else None)

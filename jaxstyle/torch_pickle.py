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

Limits, all checked before anything is allocated (a checkpoint is as hostile as any other download):

- zip members must be stored, not compressed, as ``torch.save`` writes them, so every byte read exists
  in the file (a 1 MB deflated member cannot become 1 GiB); every storage's size must match its record;
- ``scan_pickle`` walks a pickle's opcodes before it is unpickled, tracking each object it would build,
  and refuses nesting deeper than ``MAX_DEPTH`` and objects whose size counted through memo references
  (``GET``) exceeds ``EXPANSION`` times the bytes read so far plus a constant: a million-deep tuple or a
  "billion laughs" of memo references never reaches the unpickler, ``hash`` or ``repr``;
- a tensor has at most as many elements as its storage, a stride of 0 only over a dimension of size ≤ 1,
  and all tensors of a file together at most ``VIEW_BUDGET`` times the bytes of its storages: views on
  a shared storage cannot multiply memory when they are materialised;
- error messages show objects through ``short_repr`` (bounded depth and length).

So peak memory is a small multiple of the file's size (``tests/test_hostile_checkpoints.py`` runs each
case under ``RLIMIT_AS``). Anything malformed is a ``TorchFileError`` (or ``UnsafePickleError``) with a
one-line message.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import reprlib
import struct
import sys
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# A state dict is a few levels deep (dict -> tensor -> REDUCE args -> size tuple); whole training
# checkpoints (optimizer state per parameter) stay under 20. Python's hash and repr of a tuple recurse
# in C without a depth check, so a deeper key is a crash, not an error.
MAX_DEPTH = 100
# Objects counted through every memo reference, per byte of pickle read so far. A torch pickle builds
# well under one object per byte and reuses only small ones (globals, 'cpu', storages), so 4 leaves a
# wide margin; a "billion laughs" grows exponentially and passes it within a few hundred bytes.
EXPANSION = 4
EXPANSION_SLACK = 4096
# Bytes of all tensors (each reference counted) per byte of storage: 1 when every tensor owns its
# storage, a little more for saved views (x and x.t()).
VIEW_BUDGET = 4

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


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = 6


def short_repr(obj: Any) -> str:
  """``repr`` of at most 3 levels and a few items per level: safe on hostile, huge or deep objects."""
  return _REPR.repr(obj)


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
          "jaxstyle.torch_pickle.ALLOWED_GLOBALS (a checkpoint should hold tensors and containers "
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


# --- Opcode scan ------------------------------------------------------------------------------------

# Opcodes that change the object below their arguments instead of building a new one.
_MUTATORS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_MARK = object()


class _Node:
  """What the scan knows of one object the pickle builds: nesting depth, size through memo references,
  and whether a container already holds it (then changing it would make the recorded sizes stale)."""
  __slots__ = ("depth", "size", "held")

  def __init__(self, depth: int = 1, size: int = 1):
    self.depth, self.size, self.held = depth, size, False


def scan_pickle(file: BinaryIO) -> None:
  """Walks one pickle's opcodes from ``file``'s position to its STOP and raises ``UnsafePickleError``
  when what it would build is too deep (``MAX_DEPTH``) or too large counted through memo references
  (``EXPANSION``); ``TorchFileError`` when the stream is malformed. Builds nothing but one small record
  per object, so it is safe on any input; the caller seeks back and unpickles only after it passes.
  """
  stack: list[Any] = []
  marks: list[int] = []
  memo: dict[int, _Node] = {}
  start = file.tell()
  try:
    for op, arg, pos in pickletools.genops(_Remaining(file)):
      name = op.name
      if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
        index = len(memo) if name == "MEMOIZE" else arg
        # Picklers number memo entries 0, 1, 2, ...; the unpickler sizes its memo table to the
        # largest index, so LONG_BINPUT 2**31 would allocate gigabytes.
        if type(index) is not int or not 0 <= index <= len(memo):
          raise UnsafePickleError(f"pickle writes memo entry {short_repr(index)} out of sequence "
                                  f"({len(memo)} so far)")
        memo[index] = _top(stack)
        continue
      if name in ("GET", "BINGET", "LONG_BINGET"):
        if arg not in memo:
          raise TorchFileError(f"pickle reads memo entry {short_repr(arg)} before writing it")
        stack.append(memo[arg])
        continue
      if name == "DUP":
        stack.append(_top(stack))
        continue
      if name == "STOP":
        return
      before = op.stack_before
      children: list[_Node] = []
      if pickletools.markobject in before:
        if not marks:
          raise TorchFileError(f"pickle opcode {name} without a MARK")
        at = marks.pop()
        children, stack[at:] = stack[at + 1:], []
        fixed = before.index(pickletools.markobject)
      else:
        fixed = len(before)
      target = None
      if name in _MUTATORS:
        fixed -= 1
      if fixed:
        if len(stack) < fixed + (name in _MUTATORS):
          raise TorchFileError(f"pickle opcode {name} on a short stack")
        children = stack[len(stack) - fixed:] + children
        del stack[len(stack) - fixed:]
      if name in _MUTATORS:
        target = _top(stack)
        if target.held:
          raise UnsafePickleError(f"pickle changes an object after another one holds it ({name} at "
                                  f"byte {pos - start}): a cyclic structure, not a checkpoint")
      if name == "MARK":
        marks.append(len(stack))
        stack.append(_MARK)
        continue
      for child in children:
        if child is _MARK:
          raise TorchFileError(f"pickle opcode {name} consumes a MARK")
        child.held = True
      node = target if target is not None else _Node()
      node.depth = max([node.depth] + [c.depth + 1 for c in children])
      node.size += sum(c.size for c in children)
      _check_node(node, pos - start, name)
      if target is None and op.stack_after:
        stack.append(node)
  except (ValueError, EOFError) as e:   # genops: unknown opcode, truncated argument, end of file
    raise TorchFileError(f"malformed pickle: {' '.join(str(e).split())[:200]}") from None
  raise TorchFileError("malformed pickle: no STOP opcode")


class _Remaining:
  """The reads ``genops`` makes, capped at the bytes left in the file: a buffered ``read(n)``
  allocates ``n`` bytes before reading, and a length field of a hostile opcode can say 2**63."""

  def __init__(self, file: BinaryIO):
    self._file, start = file, file.tell()
    self._end = file.seek(0, io.SEEK_END)
    file.seek(start)

  def read(self, n: int) -> bytes:
    return self._file.read(max(0, min(n, self._end - self._file.tell())))

  def readline(self) -> bytes:
    return self._file.readline()

  def tell(self) -> int:
    return self._file.tell()


def _top(stack: list) -> _Node:
  if not stack or stack[-1] is _MARK:
    raise TorchFileError("malformed pickle: an opcode needs an object and the stack has none")
  return stack[-1]


def _check_node(node: _Node, offset: int, opcode: str) -> None:
  if node.depth > MAX_DEPTH:
    raise UnsafePickleError(f"pickle nests objects deeper than {MAX_DEPTH} levels ({opcode} at byte "
                            f"{offset}): not a checkpoint")
  if node.size > EXPANSION * offset + EXPANSION_SLACK:
    raise UnsafePickleError(f"pickle object at byte {offset} ({opcode}) would hold {node.size} objects "
                            "counted through its memo references, more than such a small pickle "
                            "builds: a 'billion laughs'")


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
  file_size = f.seek(0, io.SEEK_END) - start
  f.seek(start)
  magic = _safe_unpickle(f)
  if magic != LEGACY_MAGIC:
    raise TorchFileError(f"bad magic number {short_repr(magic)}: not a legacy torch.save file")
  protocol = _safe_unpickle(f)
  if protocol != LEGACY_PROTOCOL:
    raise TorchFileError(f"unsupported legacy protocol version {short_repr(protocol)}")
  if not isinstance(_safe_unpickle(f), dict):   # sys_info; storages are little-endian anyway
    raise TorchFileError("bad legacy sys_info record")

  buffers: dict[str, np.ndarray] = {}
  views: dict[str, np.ndarray] = {}

  def load_storage(storage_type, key, location, numel, view_metadata):
    del location
    dtype = storage_type.dtype
    if key not in buffers:
      if numel * dtype.itemsize + sum(b.nbytes for b in buffers.values()) > file_size:
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
    if view_key not in views:
      if type(offset) is not int or type(size) is not int or not 0 <= offset <= offset + size <= numel:
        raise TorchFileError(f"bad storage view {short_repr(view_metadata)}")
      views[view_key] = buffers[key][offset:offset + size]
    return views[view_key]

  obj = _safe_unpickle(f, load_storage)
  keys = _safe_unpickle(f)
  if not isinstance(keys, list) or set(keys) != set(buffers):
    raise TorchFileError("the storage key list does not match the storages the pickle uses")
  for key in keys:
    numel = np.frombuffer(f.read(8), "<i8")
    buf = buffers[key]
    if numel.size != 1 or int(numel[0]) != buf.size:
      raise TorchFileError(f"storage {short_repr(key)}: size record does not match its persistent id")
    nbytes = buf.size * buf.dtype.itemsize
    data = f.read(nbytes)
    if len(data) != nbytes:
      raise TorchFileError(f"storage {short_repr(key)} is truncated")
    buf[...] = from_bytes(data, buf.dtype)
  return _check_views(obj, sum(b.nbytes for b in buffers.values()))

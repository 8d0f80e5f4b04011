"""A pre-scan of a pickle's opcodes that refuses what would be too deep or too large to unpickle.

``scan_pickle`` walks a pickle's opcodes before it is unpickled, tracking each object it would build,
and refuses nesting deeper than ``MAX_DEPTH`` and objects whose size counted through memo references
(``GET``) exceeds ``EXPANSION`` times the bytes read so far plus a constant: a million-deep tuple or a
"billion laughs" of memo references never reaches the unpickler, ``hash`` or ``repr``. It builds
nothing but one small record per object, so it is safe on any input.

The errors of reading hostile checkpoints live here too (``jaxstyle.checkpoints.torch_pickle`` raises them), with
``short_repr``, which shows an object with bounded depth and length.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import reprlib
from typing import Any, BinaryIO

# A state dict is a few levels deep (dict -> tensor -> REDUCE args -> size tuple); whole training
# checkpoints (optimizer state per parameter) stay under 20. Python's hash and repr of a tuple recurse
# in C without a depth check, so a deeper key is a crash, not an error.
MAX_DEPTH = 100
# Objects counted through every memo reference, per byte of pickle read so far. A torch pickle builds
# well under one object per byte and reuses only small ones (globals, 'cpu', storages), so 4 leaves a
# wide margin; a "billion laughs" grows exponentially and passes it within a few hundred bytes.
EXPANSION = 4
EXPANSION_SLACK = 4096


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


# Opcodes that change the object below their arguments instead of building a new one.
_MUTATORS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_MEMO_WRITES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_READS = frozenset({"GET", "BINGET", "LONG_BINGET"})
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
  (``EXPANSION``); ``TorchFileError`` when the stream is malformed. The caller seeks back and unpickles
  only after it passes.
  """
  scan = _Scan(file.tell())
  try:
    for op, arg, pos in pickletools.genops(_Remaining(file)):
      if op.name == "STOP":
        return
      scan.step(op, arg, pos)
  except (ValueError, EOFError) as e:   # genops: unknown opcode, truncated argument, end of file
    raise TorchFileError(f"malformed pickle: {' '.join(str(e).split())[:200]}") from None
  raise TorchFileError("malformed pickle: no STOP opcode")


class _Scan:
  """The unpickler's stack, marks and memo, holding a ``_Node`` where the unpickler holds an object."""

  def __init__(self, start: int):
    self.stack: list[Any] = []
    self.marks: list[int] = []
    self.memo: dict[int, _Node] = {}
    self.start = start

  def step(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
    name = op.name
    if name in _MEMO_WRITES:
      index = len(self.memo) if name == "MEMOIZE" else arg
      # Picklers number memo entries 0, 1, 2, ...; the unpickler sizes its memo table to the largest
      # index, so LONG_BINPUT 2**31 would allocate gigabytes.
      if type(index) is not int or not 0 <= index <= len(self.memo):
        raise UnsafePickleError(f"pickle writes memo entry {short_repr(index)} out of sequence "
                                f"({len(self.memo)} so far)")
      self.memo[index] = _top(self.stack)
    elif name in _MEMO_READS:
      if arg not in self.memo:
        raise TorchFileError(f"pickle reads memo entry {short_repr(arg)} before writing it")
      self.stack.append(self.memo[arg])
    elif name == "DUP":
      self.stack.append(_top(self.stack))
    elif name == "MARK":
      self.marks.append(len(self.stack))
      self.stack.append(_MARK)
    else:
      self._build(op, pos - self.start)

  def _arguments(self, op: pickletools.OpcodeInfo) -> list[_Node]:
    """Pops what ``op`` consumes (a mutator's target stays on the stack)."""
    name, before, stack = op.name, op.stack_before, self.stack
    children: list[_Node] = []
    if pickletools.markobject in before:
      if not self.marks:
        raise TorchFileError(f"pickle opcode {name} without a MARK")
      at = self.marks.pop()
      children, stack[at:] = stack[at + 1:], []
      fixed = before.index(pickletools.markobject)
    else:
      fixed = len(before)
    if name in _MUTATORS:
      fixed -= 1
    if fixed:
      if len(stack) < fixed + (name in _MUTATORS):
        raise TorchFileError(f"pickle opcode {name} on a short stack")
      children = stack[len(stack) - fixed:] + children
      del stack[len(stack) - fixed:]
    return children

  def _build(self, op: pickletools.OpcodeInfo, offset: int) -> None:
    """Records the object ``op`` builds or changes, checking its depth and size."""
    children = self._arguments(op)
    target = None
    if op.name in _MUTATORS:
      target = _top(self.stack)
      if target.held:
        raise UnsafePickleError(f"pickle changes an object after another one holds it ({op.name} at "
                                f"byte {offset}): a cyclic structure, not a checkpoint")
    for child in children:
      if child is _MARK:
        raise TorchFileError(f"pickle opcode {op.name} consumes a MARK")
      child.held = True
    node = target if target is not None else _Node()
    node.depth = max([node.depth] + [c.depth + 1 for c in children])
    node.size += sum(c.size for c in children)
    _check_node(node, offset, op.name)
    if target is None and op.stack_after:
      self.stack.append(node)


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

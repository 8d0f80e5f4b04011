"""Replacing a folder as a whole: readers and killed writers see the old folder or the new one.

``replace_folder`` builds the new folder as a hidden sibling and swaps it in with one rename
(``renameat2(RENAME_EXCHANGE)`` where the kernel has it), holding a lock on the parent folder, so a
reader or a killed writer sees the old folder or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def _parent_lock(directory: Path) -> Iterator[None]:
  """An exclusive ``flock`` on ``directory``'s parent folder: the folder itself is swapped out, so a
  lock file inside it would not exclude anyone."""
  directory.parent.mkdir(parents=True, exist_ok=True)
  fd = os.open(directory.parent, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
  """Swaps two folders in one atomic step (Linux ``renameat2``); False where that is unavailable."""
  try:
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
  except (AttributeError, OSError):
    return False
  renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
  return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _remove_stale_siblings(directory: Path) -> None:
  """What a killed writer left (only writers holding the parent lock make these): unfinished new
  folders are removed; an old folder moved aside is put back when nothing replaced it."""
  for stale in directory.parent.glob(f".{directory.name}.new-*"):
    _remove(stale)
  old = directory.parent / f".{directory.name}.old"
  if old.exists() or old.is_symlink():
    if directory.exists() or directory.is_symlink():
      _remove(old)
    else:
      os.rename(old, directory)


def _remove(path: Path) -> None:
  """Deletes a folder, or what the exchange moved out of ``directory``'s place: a link or a file."""
  if path.is_symlink() or path.is_file():
    path.unlink()
  elif path.exists():
    shutil.rmtree(path, ignore_errors=True)


def _new_sibling(directory: Path) -> Path:
  """An empty hidden folder beside ``directory``, with the mode of any new folder under the umask (as
  ``image_io.atomic_path`` gives files; ``mkdtemp`` would make it private)."""
  while True:
    new = directory.parent / f".{directory.name}.new-{secrets.token_hex(4)}"
    try:
      os.mkdir(new)
      return new
    except FileExistsError:
      continue


def replace_folder(directory: str | os.PathLike, fill: Callable[[Path], Any]) -> Any:
  """Runs ``fill(new)`` on an empty hidden sibling folder, then puts ``new`` in ``directory``'s place in
  one rename; returns what ``fill`` returned. Holds the parent folder's lock throughout, so ``fill`` may
  read the current ``directory``."""
  directory = Path(directory)
  with _parent_lock(directory):
    _remove_stale_siblings(directory)
    new = _new_sibling(directory)
    try:
      result = fill(new)
      if not directory.exists():
        os.rename(new, directory)
      elif not _exchange(new, directory):
        # No atomic exchange (another OS or file system): two renames. A kill between them leaves
        # only .NAME.old, which the next writer puts back (``_remove_stale_siblings``).
        old = directory.parent / f".{directory.name}.old"
        os.rename(directory, old)
        os.rename(new, directory)
        new = old
    finally:
      _remove(new)
  return result

"""JAX's persistent compilation cache under the jaxstyle cache folder, so a second run does not compile.

On by default: ``$JAXSTYLE_CACHE/xla`` (``~/.cache/jaxstyle/xla``). ``JAXSTYLE_COMPILE_CACHE=0`` turns
it off; any other non-empty value names another folder. Entries are keyed by XLA on the program, the
backend and the JAX version, so stale ones are never used, only left behind (delete the folder freely).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import jax

from jaxstyle.checkpoints import cache

VARIABLE = "JAXSTYLE_COMPILE_CACHE"
OFF = ("0", "false", "no", "off")


def cache_dir() -> Path | None:
  """Where compiled programs are cached, or None when ``JAXSTYLE_COMPILE_CACHE`` turns it off."""
  value = os.environ.get(VARIABLE, "").strip()
  if value.lower() in OFF:
    return None
  return Path(value) if value else cache.root() / "xla"


def enable(log: Callable[[str], None] | None = None) -> Path | None:
  """Points JAX's persistent cache at ``cache_dir()`` (before the first compile); returns it.

  Every program is cached, however fast it compiled: the CLI's programs are few and each one matters.
  """
  directory = cache_dir()
  if directory is None:
    return None
  try:
    directory.mkdir(parents=True, exist_ok=True)
  except OSError as e:   # a read-only home must not stop a run: it only costs the compile
    if log:
      log(f"compile cache off: cannot create {directory} ({e.strerror})")
    return None
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory

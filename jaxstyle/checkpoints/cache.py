"""The jaxstyle cache folder: ``$JAXSTYLE_CACHE``, else ``~/.cache/jaxstyle``.

It holds the converted ImageNet VGG-19 (``pretrained``) and, under ``xla/``, the compiled programs
(``program/compile_cache.py``). A module of its own, importing nothing, so that finding the folder does
not import the checkpoint tooling.
"""
from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "JAXSTYLE_CACHE"


def root(path: str | os.PathLike | None = None) -> Path:
  """``path``, else ``$JAXSTYLE_CACHE``, else ``~/.cache/jaxstyle``."""
  if path is not None:
    return Path(path)
  return Path(os.environ.get(VARIABLE) or Path.home() / ".cache" / "jaxstyle")

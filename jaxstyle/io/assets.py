"""The files shipped inside the package: the default weights and the bundled example pictures.

They live in ``jaxstyle/assets/`` and are found through ``importlib.resources``, so an installed wheel
finds them as a checkout does (the repository's ``weights/`` and ``examples/`` are links to them, for
the commands and documents that name those folders).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path


def root() -> Path:
  """``jaxstyle/assets/`` of the imported package (a folder: the package is never run from a zip)."""
  return Path(str(importlib.resources.files("jaxstyle").joinpath("assets")))


def weights() -> Path:
  """The default weights folder (fp16 SANet, decoder and SegNet; ``MODEL_CARD.md`` inside)."""
  return root() / "weights"


def examples(kind: str) -> Path:
  """The bundled public-domain pictures of ``kind`` (``content`` or ``styles``)."""
  return root() / "examples" / kind

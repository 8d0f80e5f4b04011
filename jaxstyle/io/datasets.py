"""Datasets of records, read by index: a tfds dataset prepared in the ``array_record`` file format.

``tfds_source`` opens a split with ``tfds.data_source`` (random access, no TensorFlow graph): record
``i`` is a dict of its features, the ones named in ``skip_decoding`` left as their encoded bytes, so
images are decoded by ``image_io``, the one decoder of the project, not by tfds or TensorFlow. Prepare
a dataset with ``tfds build NAME --file_format=array_record``. The trainers' Grain pipelines and the
CLI's ``tfds:NAME:SPLIT`` inputs read through it; ``tensorflow_datasets`` (the ``data`` extra) is
imported only when a dataset is opened.
"""
from __future__ import annotations

from typing import Any, Sequence


def tfds_source(name: str, split: str, data_dir: str | None, skip_decoding: Sequence[str]) -> Any:
  """The records of tfds dataset ``name`` (``NAME[/CONFIG][:VERSION]``), split ``split``, as a sequence."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top   see the module docstring
  return tfds.data_source(name, split=split, data_dir=data_dir,
                          decoders={k: tfds.decode.SkipDecoding() for k in skip_decoding},
                          builder_kwargs={"file_format": "array_record"})

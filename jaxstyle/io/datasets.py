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


class DatasetError(ValueError):
  """A tfds dataset that cannot be opened here; the message is one line saying how to get it."""


def tfds_source(name: str, split: str, data_dir: str | None, skip_decoding: Sequence[str]) -> Any:
  """The records of tfds dataset ``name`` (``NAME[/CONFIG][:VERSION]``), split ``split``, as a sequence.

  Never downloads (nothing is fetched from a hub at run time): a dataset that is not prepared in
  ``data_dir`` is a ``DatasetError``, as is a missing ``tensorflow_datasets``.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top   see the module docstring
  except ImportError:
    raise DatasetError(f"tfds:{name}: reading tfds datasets needs tensorflow-datasets "
                       "(pip install -e '.[data]')") from None
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            decoders={k: tfds.decode.SkipDecoding() for k in skip_decoding},
                            builder_kwargs={"file_format": "array_record"})
  except Exception as e:  # pylint: disable=broad-except   tfds raises many kinds for a missing dataset
    what = " ".join(str(e).split()).split(". ")[0][:200] or type(e).__name__   # tfds lists every dataset
    where = data_dir or "tfds's default data_dir"
    raise DatasetError(f"tfds:{name}:{split}: cannot open the dataset in {where} "
                       f"({what}); prepare it with: tfds build {name} --file_format=array_record"
                       + (f" --data_dir {data_dir}" if data_dir else "")) from None

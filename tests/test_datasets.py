"""tfds datasets by index: a dataset that is not prepared is refused in one line, never downloaded."""
import sys

import pytest

from jaxstyle.io import datasets


def test_a_dataset_not_prepared_is_refused_and_not_downloaded(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(datasets.DatasetError) as e:
    datasets.tfds_source("mnist", "train", str(tmp_path), ["image"])
  message = str(e.value)
  assert message.startswith("tfds:mnist:train: cannot open the dataset in ") and "\n" not in message
  assert f"tfds build mnist --file_format=array_record --data_dir {tmp_path}" in message
  assert not list(tmp_path.rglob("*.tar.gz")) and not (tmp_path / "downloads").exists()


def test_an_unknown_dataset_is_one_short_line(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(datasets.DatasetError, match="no_such_dataset_here") as e:
    datasets.tfds_source("no_such_dataset_here", "train", str(tmp_path), ["image"])
  assert len(str(e.value)) < 400   # tfds's own message lists every dataset it knows


def test_without_tensorflow_datasets_the_refusal_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)   # import raises ImportError
  with pytest.raises(datasets.DatasetError, match=r"needs tensorflow-datasets \(pip install -e '.\[data\]'\)"):
    datasets.tfds_source("coco/2017", "train", None, ["image"])

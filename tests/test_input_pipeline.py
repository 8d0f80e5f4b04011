"""Grain input pipelines: determinism per (seed, step), sharding, skipped files, exact resume through orbax
for the folder source and a tfds source (a tiny array_record dataset built in a temporary folder)."""
import itertools
from pathlib import Path

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from jaxstyle.training import data
from jaxstyle.training import input_pipeline as ip

ONE_PROCESS = dict(process_index=0, process_count=1)


def write_image(path: Path, hw, seed: int) -> np.ndarray:
  path.parent.mkdir(parents=True, exist_ok=True)
  x = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
  Image.fromarray(x).save(path)
  return x


@pytest.fixture
def image_files(tmp_path):
  """Five readable images (nested, landscape and portrait) and two unreadable ones, as listed."""
  root = tmp_path / "images"
  for i, hw in enumerate([(24, 40), (40, 24), (24, 24), (30, 50), (50, 26)]):
    write_image(root / ("sub" if i % 2 else "") / f"im{i}.png", hw, i)
  (root / "garbage.jpg").write_bytes(b"not an image at all")
  cut = root / "truncated.png"
  write_image(cut, (32, 32), 99)
  cut.write_bytes(cut.read_bytes()[:100])
  return data.list_images(root)


def folder(files, **kw):
  return ip.folder_batches(files, **{"batch_size": 2, "crop": 16, "resize": 24, "seed": 3, "num_threads": 2,
                                     **ONE_PROCESS, **kw})


def take(it, n: int) -> list[dict[str, np.ndarray]]:
  return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_folder_batches_skip_and_count_unreadable_files(image_files):
  it = folder(image_files, batch_size=3, seed=0)
  batches = take(it, 6)   # 18 slots > 2 epochs of 7 files: every file is visited
  it.close()
  for b in batches:
    assert b["image"].shape == (3, 16, 16, 3) and b["image"].dtype == np.float32
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
  stats = it.stats.metrics()
  assert stats["data/corrupt_files"] == 2
  assert it.stats.corrupt == {f for f in image_files if "garbage" in f or "truncated" in f}
  assert stats["data/skipped_reads"] >= 4        # each bad file once per epoch at least
  assert stats["data/decoded"] >= 18


def test_batches_are_a_pure_function_of_seed_and_step(image_files):
  a, b, other = folder(image_files), folder(image_files, num_threads=1), folder(image_files, seed=4)
  first, second = take(a, 5), take(b, 5)
  assert_same_batches(first, second)   # independent of threads and timing
  assert not np.array_equal(first[0]["image"], next(other)["image"])
  assert not np.array_equal(first[0]["image"], first[1]["image"])
  for it in (a, b, other):
    it.close()


def constant_images(n: int):
  """Records 0..n-1 read as 8×8 images filled with the record's number: a crop shows its record."""
  return list(range(n)), lambda r: np.full((8, 8, 3), r, np.uint8)


def records_seen(batches) -> list[int]:
  return [int(round(x[0, 0, 0] * 255)) for b in batches for x in b["image"]]


def test_processes_read_disjoint_shards_and_each_epoch_is_a_permutation():
  records, read = constant_images(10)
  shards = []
  for p in range(2):
    it = ip.crop_batches(records, read, batch_size=5, crop=4, seed=1, process_index=p, process_count=2,
                         num_threads=1)
    seen = records_seen(take(it, 4))    # 20 elements = 4 epochs of a 5-record shard
    it.close()
    for epoch in range(4):
      assert sorted(seen[5 * epoch:5 * epoch + 5]) == list(range(p, 10, 2))
    assert seen[:5] != seen[5:10]       # reshuffled every epoch
    shards.append(set(seen))
  assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(10))


def test_unreadable_records_are_replaced_from_the_same_shard():
  records, read = constant_images(12)
  bad = {3, 7}

  def flaky(r):
    if r in bad:
      raise OSError("unreadable")
    return read(r)
  runs = []
  for _ in range(2):
    it = ip.crop_batches(records, flaky, batch_size=4, crop=4, seed=2, process_index=1, process_count=2,
                         num_threads=2)
    runs.append(take(it, 6))
    it.close()
  assert_same_batches(*runs)
  seen = records_seen(runs[0])
  assert set(seen) <= set(range(1, 12, 2)) - bad and it.stats.corrupt == {3, 7}


# ------------------------------------------------------------------------------- resume through orbax


def save_checkpoint(directory: Path, step: int, it: grain.DatasetIterator):
  """As a trainer does: the train state and the iterator's state in one orbax checkpoint."""
  mngr = ocp.CheckpointManager(directory)
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"step": np.array(step, np.int32)}),
                                          data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  mngr.close()


def restore_checkpoint(directory: Path, it: grain.DatasetIterator) -> int:
  mngr = ocp.CheckpointManager(directory)
  step = mngr.latest_step()
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore({"step": np.zeros((), np.int32)}), data=grain.checkpoint.CheckpointRestore(it)))
  mngr.close()
  assert restored["data"] is it
  return int(restored["state"]["step"])


def check_exact_resume(make, tmp_path: Path, before: int = 3, after: int = 4):
  """Batches ``before..before+after`` of an uninterrupted iterator equal those of one restored from an
  orbax checkpoint written after ``before`` batches (the checkpointed one kept running)."""
  straight = make()
  take(straight, before)
  save_checkpoint(tmp_path / "ckpt", before, straight)
  expected = take(straight, after)
  straight.close()
  resumed = make()
  assert restore_checkpoint(tmp_path / "ckpt", resumed) == before
  assert_same_batches(take(resumed, after), expected)
  fresh = make()
  assert not np.array_equal(next(fresh)["image"], expected[0]["image"])   # restoring did something
  for it in (resumed, fresh):
    it.close()


def test_folder_source_resumes_exactly_from_an_orbax_checkpoint(image_files, tmp_path):
  check_exact_resume(lambda: folder(image_files), tmp_path)


# ------------------------------------------------------------------------------------------------ tfds


def test_panoptic_person_mask():
  ids = np.array([[1, 2], [300, 70000]], np.int64)           # segment ids per pixel
  rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
  mask = ip.panoptic_person_mask(rgb, np.array([1, 2, 300, 70000]), np.array([0, 5, 0, 0]), person_label=0)
  np.testing.assert_array_equal(mask, [[1, 0], [1, 1]])


def tiny_panoptic_examples(n: int = 6):
  """Images whose red channel is 255 exactly on the person segments (so a crop's mask can be checked)
  and panoptic PNGs with a person (label 1), a car (label 0) and unlabelled background."""
  rng = np.random.default_rng(0)
  for i in range(n):
    h, w = 20 + 2 * i, 28 - i
    segments = rng.integers(0, 3, (h, w))            # 0: background, 1: person (id 5), 2: car (id 700)
    ids = np.select([segments == 1, segments == 2], [5, 700], 0)
    panoptic = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[..., 0] = np.where(segments == 1, 255, 0)
    yield i, {"image": image, "panoptic_image": panoptic,
              "panoptic_objects": {"id": np.array([5, 700]), "label": np.array([1, 0])}}


_TFDS_NAMES = itertools.count()


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
  """(name, data_dir) of a tiny COCO-panoptic-like tfds dataset prepared in array_record format."""
  tfds = pytest.importorskip("tensorflow_datasets")

  class JaxstyleTinyPanoptic(tfds.core.GeneratorBasedBuilder):
    # A name of its own per fixture: test modules that share this fixture run it once each, in one
    # process under xdist, and tfds refuses to register a dataset name twice.
    name = f"jaxstyle_tiny_panoptic_{next(_TFDS_NAMES)}"
    VERSION = tfds.core.Version("1.0.0")
    pkg_dir_path = Path(__file__).parent   # a builder defined in a test module has no package folder

    def _info(self):
      png = dict(shape=(None, None, 3), encoding_format="png")
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(**png), "panoptic_image": tfds.features.Image(**png),
          "panoptic_objects": tfds.features.Sequence({
              "id": np.int64, "label": tfds.features.ClassLabel(names=["car", "person"])})}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      return tiny_panoptic_examples()

  data_dir = tmp_path_factory.mktemp("tfds")
  JaxstyleTinyPanoptic(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return JaxstyleTinyPanoptic.name, str(data_dir)


def test_tfds_person_masks_follow_the_person_segments(tiny_tfds):
  name, data_dir = tiny_tfds
  it = ip.tfds_person_mask_batches(name, "train", batch_size=3, crop=12, resize=18, data_dir=data_dir,
                                   num_threads=2, **ONE_PROCESS)
  for b in take(it, 3):
    assert b["image"].shape == (3, 12, 12, 3) and b["mask"].shape == (3, 12, 12)
    assert set(np.unique(b["mask"])) <= {0.0, 1.0} and b["mask"].any()
  it.close()
  # Record 0 (20×28) has the smallest shorter side: with resize = 20 its pixels are kept as they are, so
  # its crop's mask is exactly where red is 255. The first 6 elements are one epoch: record 0 is there.
  it = ip.tfds_person_mask_batches(name, "train", batch_size=6, crop=20, resize=20, data_dir=data_dir,
                                   num_threads=1, **ONE_PROCESS)
  b = next(it)
  it.close()
  # The reader runs ahead of the batches by up to prefetch (2) × batch_size elements, so how many were
  # decoded when close() lands depends on thread timing; none may have been skipped.
  stats = it.stats.metrics()
  assert 6 <= stats["data/decoded"] <= 6 + 2 * 6, stats
  assert stats["data/skipped_reads"] == 0 and stats["data/corrupt_files"] == 0, stats
  unresized = [i for i in range(6) if np.isin(b["image"][i, ..., 0], [0.0, 1.0]).all()]
  assert len(unresized) == 1
  np.testing.assert_array_equal(b["mask"][unresized[0]], b["image"][unresized[0], ..., 0])


def test_tfds_sources_resume_exactly_from_an_orbax_checkpoint(tiny_tfds, tmp_path):
  name, data_dir = tiny_tfds
  kw = dict(batch_size=2, crop=12, resize=16, data_dir=data_dir, seed=5, num_threads=2, **ONE_PROCESS)
  check_exact_resume(lambda: ip.tfds_person_mask_batches(name, "train", **kw), tmp_path / "masks")
  check_exact_resume(lambda: ip.tfds_image_batches(name, "train", **kw), tmp_path / "images")

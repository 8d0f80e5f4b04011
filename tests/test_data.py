"""Training data: image lists, device-resident crops, the SegNet portrait split (streams: test_input_pipeline)."""
import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle.training import data


def write_image(path: Path, hw, seed: int, mode: str = "RGB") -> np.ndarray:
  path.parent.mkdir(parents=True, exist_ok=True)
  shape = (*hw, 3) if mode == "RGB" else hw
  x = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
  Image.fromarray(x).save(path)
  return x


def test_list_images_recursive_sorted_by_suffix(tmp_path):
  for name in ["b.png", "sub/a.JPG", "sub/deeper/c.webp", "notes.txt", "clip.mp4", "sub/x.tiff"]:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"")   # listing does not decode
  files = data.list_images(tmp_path, tmp_path / "notes.txt")
  assert files == sorted(files)
  assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
      "b.png", "notes.txt", "sub/a.JPG", "sub/deeper/c.webp", "sub/x.tiff"]   # a named file is kept
  with pytest.raises(FileNotFoundError):
    data.list_images(tmp_path / "missing")


def is_crop_of(crop: np.ndarray, image: np.ndarray) -> bool:
  k = crop.shape[0]
  return any(np.array_equal(crop, image[y:y + k, x:x + k])
             for y in range(image.shape[0] - k + 1) for x in range(image.shape[1] - k + 1))


def test_resident_crops_come_from_the_images(tmp_path):
  # Shorter side 16 = resize: no resampling, so crops must match the files exactly.
  originals = {}
  for i, hw in enumerate([(16, 24), (24, 16), (16, 40)]):   # landscape, portrait, too wide (2.5:1)
    originals[f"{tmp_path}/im{i}.png"] = write_image(tmp_path / f"im{i}.png", hw, i)
  (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
  files = sorted(originals) + [str(tmp_path / "broken.png")]
  ds = data.load_resident(files, resize=16, max_aspect=2.0, num_threads=2)
  assert ds.pixels.shape == (3, 16, 32, 3) and ds.pixels.dtype == np.uint8
  assert ds.stats.metrics()["data/corrupt_files"] == 1 and ds.stats.corrupt == {str(tmp_path / "broken.png")}
  assert list(ds.widths) == [24, 24, 32] and list(ds.transposed) == [False, True, False]
  arrays = jax.tree.map(jnp.asarray, ds.arrays())
  key = jax.random.PRNGKey(0)
  sample = jax.jit(data.sample_crops, static_argnums=(3, 4, 5))
  seen = []
  for step in range(4):
    crops = np.asarray(sample(arrays, key, jnp.int32(step), 6, 8, True))
    assert crops.shape == (6, 8, 8, 3) and crops.dtype == np.float32
    for crop in (crops * 255).round().astype(np.uint8):
      matches = [f for f, im in originals.items() if is_crop_of(crop, im) or is_crop_of(crop[:, ::-1], im)]
      assert matches, "a crop is not a (mirrored) window of any image"
      seen += matches
  assert set(seen) == set(originals)  # every image visited (epochs are permutations)
  # The too-wide image was centre-cropped to 32 columns: its outer 4 columns never appear.
  wide = originals[f"{tmp_path}/im2.png"]
  np.testing.assert_array_equal(ds.pixels[2], wide[:, 4:36])
  again = np.asarray(sample(arrays, key, jnp.int32(2), 6, 8, True))
  np.testing.assert_array_equal(again, np.asarray(sample(arrays, key, jnp.int32(2), 6, 8, True)))


def make_shared_data(root: Path) -> Path:
  """A miniature of ../shared/data: portraits (+masks, teacher masks) and photos."""
  portraits, masks, teacher, photos = (root / "portraits", root / "portraits_masks",
                                       root / "portraits_masks" / "mediapipe", root / "photos")
  rows = []
  for i in range(10):
    name = f"npr_{i}.png" if i < 6 else f"other_{i}.jpg"
    write_image(portraits / name, (20, 16), i)
    write_image(teacher / (Path(name).stem + ".png"), (20, 16), 100 + i, mode="L")
    mask_file, kind = "", ""
    if i < 6:
      mask_file, kind = name, "gt_npr_manual"
    elif i == 6:
      mask_file, kind = f"other_{i}.png", "pseudo_u2net_human_seg (U2Net prediction)"
    if mask_file:
      write_image(masks / mask_file, (20, 16), 200 + i, mode="L")
    rows.append({"file": name, "mask_file": mask_file, "mask_kind": kind})
  photos.mkdir(parents=True)
  for path, fields, table in [(portraits, ["file", "mask_file", "mask_kind"], rows),
                              (photos, ["file"], [{"file": f"photo{i}.jpg"} for i in range(4)])]:
    with open(path / "SOURCES.tsv", "w", newline="") as f:
      w = csv.DictWriter(f, fields, delimiter="\t")
      w.writeheader()
      w.writerows(table)
  for i in range(4):
    write_image(photos / f"photo{i}.jpg", (16, 20), 300 + i)
  return root


def test_portrait_segmentation_split(tmp_path):
  root = make_shared_data(tmp_path)
  train, held = data.portrait_segmentation_split(root, photos_with_people=("photo1.jpg",))
  again = data.portrait_segmentation_split(root, photos_with_people=("photo1.jpg",))
  assert (train, held) == again
  assert len(held) == 1 and held[0].kind == "gt_npr_manual"   # round(0.2 × 6 hand-drawn)
  assert {ex.image for ex in train}.isdisjoint({ex.image for ex in held})
  kinds = sorted(ex.kind for ex in train)
  assert kinds.count("gt_npr_manual") == 5 and kinds.count("pseudo_u2net_human_seg") == 1
  assert kinds.count("mediapipe_teacher") == 3 and kinds.count("negative") == 3
  assert all(ex.mask is None for ex in train if ex.kind == "negative")
  assert not any(ex.image.endswith("photo1.jpg") for ex in train)
  teacher = [ex for ex in train if ex.kind == "mediapipe_teacher"]
  assert all("/mediapipe/" in ex.mask for ex in teacher)
  # The split depends on names only: adding portraits keeps earlier held-out choices mostly stable.
  assert held[0] == min((ex for ex in train + held if ex.kind == "gt_npr_manual"),
                        key=lambda ex: data.holdout_order(Path(ex.image).name))

  images, masks = data.load_eval_pairs(held, 12)
  assert images.shape == (1, 12, 12, 3) and masks.shape == (1, 12, 12)
  ds = data.load_resident([ex.image for ex in train], resize=16, masks=[ex.mask for ex in train])
  assert ds.pixels.shape[-1] == 4
  negatives = [i for i, f in enumerate(ds.files) if "photo" in f]
  assert negatives and not ds.pixels[negatives, ..., 3].any()


def test_relative_data_paths_start_at_the_repository_root():
  """Configs' ``data_dir`` (``../shared/data``) is relative to the repository, wherever the module lives."""
  assert (data.REPO_ROOT / "pyproject.toml").is_file() and (data.REPO_ROOT / "jaxstyle").is_dir()
  assert data.resolve_path("../shared/data").resolve() == (data.REPO_ROOT.parent / "shared" / "data").resolve()

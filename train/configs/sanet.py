r"""SANet training configs (``jaxstyle/training/sanet_training.py``).

Variants (``--config train/configs/sanet.py:VARIANT``; extra ``key=value`` pairs after a comma override
fields, e.g. ``:shared_data,crop=128,style.folders=styles+photos``; any field also with
``--config.FIELD=VALUE``):

- ``default``: the published SANet setup. Content: COCO 2017 train via tfds; style: a WikiArt folder
  (``$data_dir/wikiart``); shorter side 512, random 256² crops, batch 5, Adam 1e-4 with inverse-time decay
  5e-5, λc = 1, λs = 3, λid1 = 50 (pixels), λid2 = 1 (features), 160k steps, frozen ImageNet VGG-19
  as shipped, its loss features divided by their mean activations (``encoder``; the shipped weights).

      python -m train.sanet --config train/configs/sanet.py --workdir runs/sanet_default

  Expected (measured only for the first steps, on 2 CPU cores at 64–128 px with ``shared_data``): total
  loss ~190 over steps 1–10 and ~155 by step 80 (identity-feature ~70 and style ~25 dominate; content ~2.9),
  then falling slowly; sample grids are still noise after 300 steps. The paper's quality needs the full
  160k steps (not run as of 2026-11-29: the shipped weights have 10,730 steps at batch 16).
- ``seed_paper``: as ``default`` but with the identity weights as the paper's text prints them
  (λid1 = 1, λid2 = 50; the published code uses 50 and 1).
- ``shared_data``: content = ``photos/`` + ``portraits/``, style = ``styles/`` of the shared data folder,
  decoded once and kept on the device (random crops inside the step); sizes configurable. The quality
  harness's held-out portraits and paintings (``QUALITY_HELD_OUT_*``, ``benchmarks/quality.py``) are
  excluded by file stem, so they stay unseen however the folders are packed (the weights shipped before
  this exclusion saw them: ``docs/quality.md``).

      python -m train.sanet --config train/configs/sanet.py:shared_data --workdir runs/sanet_shared \
          --config.batch_size=32 --config.num_steps=20000

  Expected: as ``default``. Throughput: 422–431 samples/s at 256² crops, batch 16, bfloat16 on one
  NVIDIA H100 80GB HBM3 (2026-11-26, ``docs/runs/sanet_h100_metrics.jsonl``); ~7 s/step (0.28 img/s) at
  128² crops, batch 2 on 2 CPU cores, compile ~65 s. The step alone: ``benchmarks/train_throughput.py``.
- ``runlocal``: the tiny model, a random encoder, 32 px crops of the shared folders, 20 steps — a smoke
  test on a laptop CPU in under a minute:

      python -m train.sanet --config train/configs/sanet.py:runlocal --workdir /tmp/sanet_runlocal

Continuing from a weights folder (``init_weights=DIR``): when the workdir has no checkpoint, the decoder
and transform start from ``DIR``'s exported weights and the step counter (hence the learning-rate decay
and the random streams) from the steps its manifest records; Adam's moments start at zero (exports do not
carry them). ``scripts/gpu_train_sanet.sh`` continues the shipped ``weights/`` this way.

Paths: ``data_dir`` is relative to the repository root unless absolute (default ``../shared/data``,
the shared folder beside a checkout); image folders are relative to ``data_dir`` unless absolute.
"""
import ml_collections

from train.configs import common

# Never trained on (``shared_data``): the pairs of ``benchmarks/quality.py``. Portraits with one face that
# MediaPipe Face Mesh finds at 384 px, a person mask and some background; the two public-domain ones
# first (their sheets may be committed). Paintings: public domain.
QUALITY_HELD_OUT_PORTRAITS = (
    "skimage_astronaut.jpg", "mpl_grace_hopper.jpg", "celebamaskhq_1.jpg",
    "facerec_lin-manuel-miranda.png", "facerec_obama.jpg", "facerec_biden2.jpg", "u2net_portrait_man4.jpg",
    "u2net_portrait_kid2.jpg", "portseg_kid8.jpg", "neuralstyle_brad_pitt.jpg", "adain_lenna.jpg",
    "bgmatting_0500_img.jpg", "u2net_human_julia_trotti_17.jpg")
# Van Gogh 1889, Hokusai c. 1831, Kandinsky 1913, Matisse 1905.
QUALITY_HELD_OUT_PAINTINGS = ("titu_starry_night.jpg", "titu_wave_kanagawa.jpg",
                              "sanet_Composition-VII.jpg", "adain_woman_with_hat_matisse.jpg")


def stems(names) -> tuple[str, ...]:
  """File names without their suffix: packing (``scripts/pack_images.py``) re-encodes as JPEG."""
  return tuple(name.rsplit(".", 1)[0] for name in names)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.get_config(default, VARIANTS, arg)


def default() -> ml_collections.ConfigDict:
  config = common.base()
  # imagenet: the shipped weights were trained on it (0–255 inputs, features 10²–10³× larger: the losses
  # are normalised instead, but the decoder/transform see large inputs and the first ~100 steps are spent
  # shrinking the decoder); imagenet_normalised: rescaled per block to about unit mean activation
  # (encoder_weights.normalised_vgg; exported with the weights), the scale SANet's λs and lr were tuned on.
  config.init_weights = ""                 # a weights folder to continue from (see the docstring)
  # exclude: file stems never read from the folders (the quality harness's held-out images).
  config.content = ml_collections.ConfigDict(
      {"source": "tfds", "name": "coco/2017", "split": "train", "folders": (), "exclude": ()})
  config.style = ml_collections.ConfigDict(
      {"source": "folder", "name": "", "split": "train", "folders": ("wikiart",), "exclude": ()})
  config.resident = False                  # decode folders once, crop on the device
  config.batch_size = 5
  config.lr_decay = 5e-5                   # lr / (1 + lr_decay · step), SANet's adjust_learning_rate
  # λ of each loss term, read by name into sanet_training.LossWeights (which admits no other field here).
  config.loss = ml_collections.ConfigDict(
      {"content": 1.0, "style": 3.0, "identity_pixel": 50.0, "identity_feature": 1.0})
  config.num_steps = 160_000
  config.sample_every = 1000
  return config


SHARED_DATA = {
    "content.source": "folder", "content.folders": ("photos", "portraits"),
    "content.exclude": stems(QUALITY_HELD_OUT_PORTRAITS),
    "style.folders": ("styles",), "style.exclude": stems(QUALITY_HELD_OUT_PAINTINGS),
    "resident": True, "batch_size": 8, "num_steps": 20_000, "log_every": 20, "sample_every": 500,
    "export_every": 2000,
}
VARIANTS = {
    "default": {},
    "seed_paper": {"loss.identity_pixel": 1.0, "loss.identity_feature": 50.0},
    "shared_data": SHARED_DATA,
    "runlocal": {**SHARED_DATA, **common.RUNLOCAL, "sample_every": 10},
}

r"""SegNet (person mask) training configs (``jaxstyle/segnet_training.py``).

Variants (``--config train/configs/segnet.py:VARIANT[,key=value...]``, or ``--config.FIELD=VALUE``):

- ``default``: the "shared" SegNet decoder on the frozen ImageNet VGG-19, trained on the shared portraits
  (``portraits/`` with their hand-drawn or shipped masks, MediaPipe teacher masks where none exists)
  plus person-free ``photos/`` as negatives, all resident on the device; 192 px shorter side, random
  160² crops with flips, batch 8, Adam 3e-4 (100 warm-up steps, cosine to 1%), BCE + Dice; mIoU on a
  fixed 20% of the hand-annotated portraits (14 images) every 100 steps.

      python -m train.segnet --config train/configs/segnet.py --workdir runs/segnet

  Expected (measured with ``resize=160,crop=128,eval_size=160`` and the unnormalised ``imagenet``
  encoder, 300 steps, 42 min on 2 shared CPU cores): held-out mIoU 0.80 at step 50, 0.85 at 150–300;
  for scale, an all-person mask scores 0.675 and the MediaPipe teacher 0.973 on the same 14 images.
- ``coco_panoptic``: COCO 2017 panoptic ``person`` masks through tfds (shorter side 512, 384² crops,
  batch 16, 20k steps); mIoU on 64 crops of the validation split.

      python -m train.segnet --config train/configs/segnet.py:coco_panoptic --workdir runs/segnet_coco

- ``runlocal``: the tiny model with a random encoder at 32–40 px for 20 steps (a smoke test).

      python -m train.segnet --config train/configs/segnet.py:runlocal --workdir /tmp/segnet_runlocal

Paths: ``data_dir`` is relative to the repository root unless absolute (default ``../shared/data``).
"""
import ml_collections

from train.configs import sanet as sanet_configs

# photos/ (as listed in photos/SOURCES.tsv, 193 files) checked by eye on 2026-11-26: these show people
# or might (tiny figures, statues, silhouettes, drawings) and are never used as negatives.
PHOTOS_WITH_PEOPLE = (
    "darknet_kite.jpg", "darknet_person.jpg", "dps_in10.jpg", "dps_in17.jpg", "dps_in59.jpg",
    "dps_in60.jpg", "dps_in8.png", "dps_tar10.jpg", "dps_tar54.jpg", "dps_tar8.png", "fst_stata.jpg",
    "nnst_C2.jpg", "nnst_C3.jpg", "nstf_taj_mahal.jpg", "titu_Dawn_Sky.jpg", "titu_ancient_city.jpg",
    "u2net_0002-01.jpg", "u2net_boat.jpg", "u2net_girl.png", "u2net_hockey.png", "u2net_im_14.png",
    "u2net_sailboat3.jpg", "ust_004.jpg", "ust_028.jpg", "ust_04.jpg",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, overrides = sanet_configs.parse_arg(arg)
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; one of {sorted(VARIANTS)}")
  config = default()
  VARIANTS[variant](config)
  for key, value in overrides.items():
    sanet_configs.override(config, key, value)
  return config


def default() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = "default"                 # its ModelConfig.segnet must be a "shared" SegNet
  config.dtype = "float32"
  config.formulation = "auto"
  # Must match the SANet run exporting into the same weights folder (train/configs/sanet.py).
  config.encoder = "imagenet"   # imagenet (the shipped weights) | imagenet_normalised | random (tests)
  config.seed = 0

  config.source = "portraits"              # portraits (shared folders, resident) | tfds
  config.data_dir = "../shared/data"
  config.negatives = True                  # person-free photos with all-zero targets
  config.photos_with_people = PHOTOS_WITH_PEOPLE
  config.holdout_fraction = 0.2            # of the hand-annotated portraits, for mIoU
  config.tfds_name = "coco/2017_panoptic"
  config.split = "train"
  config.eval_split = "validation"
  config.eval_examples = 64                # tfds: held-out crops
  config.tfds_data_dir = ""
  config.resize = 192
  config.crop = 160
  config.max_aspect = 2.0
  config.flip = True
  config.batch_size = 8
  config.num_decode_threads = 8

  config.lr = 3e-4
  config.warmup_steps = 100
  config.dice_weight = 1.0
  config.num_steps = 2000

  config.eval_size = 192                   # held-out images: shorter side, then a center square
  config.eval_every = 100
  config.eval_batch_size = 8
  config.num_samples = 6
  config.log_every = 10
  config.checkpoint_every = 100
  config.keep_checkpoints = 3
  config.export_every = 500
  config.export_dir = ""                   # default: WORKDIR/weights
  config.export_dtype = "float16"
  return config


def coco_panoptic(config):
  config.source = "tfds"
  config.resize = 512
  config.crop = 384
  config.eval_size = 384
  config.batch_size = 16
  config.num_steps = 20_000
  config.eval_every = 1000
  config.checkpoint_every = 1000
  config.export_every = 5000


def runlocal(config):
  config.model = "tiny"
  config.encoder = "random"
  config.formulation = "xla"
  config.resize = 40
  config.crop = 32
  config.eval_size = 32
  config.batch_size = 4
  config.lr = 3e-3
  config.warmup_steps = 2
  config.num_steps = 20
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.export_every = 20
  config.export_dtype = "float32"


VARIANTS = {"default": lambda config: None, "coco_panoptic": coco_panoptic, "runlocal": runlocal}

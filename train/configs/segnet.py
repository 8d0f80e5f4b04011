r"""SegNet (person mask) training configs (``jaxstyle/segnet_training.py``).

Variants (``--config train/configs/segnet.py:VARIANT[,key=value...]``, or ``--config.FIELD=VALUE``):

- ``default``: the "shared_skip" SegNet decoder on the frozen ImageNet VGG-19, trained on the shared
  portraits (``portraits/`` with their hand-drawn or shipped masks, MediaPipe teacher masks where none
  exists) and person-free ``photos/``, all resident on the device: 448 px shorter side, 384² crops with
  flips, half of them a person pasted on a photo at 0.5–2× scale, a tenth a photo alone, then colour,
  blur, noise and JPEG noise (``jaxstyle/augment.py``); batch 16, Adam 3e-4 (100 warm-up steps, cosine to
  1%), BCE + Dice, 3000 steps (about 2½ minutes on one H200). Every 250 steps: person IoU on a fixed 20%
  of the hand-drawn portraits (14 images) at 512 px through the CLI's path (``jaxstyle/segnet_eval.py``),
  beside the MediaPipe teacher's (0.972 on the same masks).

      python -m train.segnet --config train/configs/segnet.py --workdir runs/segnet

- ``cpu_finetune``: continues from a weights folder's SegNet (``init_from``, default the shipped
  ``weights/``) at 320² crops from 400 px images, batch 4, Adam 1e-4, in the background on a CPU.

      python -m train.segnet --config train/configs/segnet.py:cpu_finetune --workdir runs/segnet_cpu
- ``coco_panoptic``: COCO 2017 panoptic ``person`` masks through tfds (shorter side 512, 384² crops,
  batch 16, 20k steps); mIoU on 64 crops of the validation split.

      python -m train.segnet --config train/configs/segnet.py:coco_panoptic --workdir runs/segnet_coco

- ``runlocal``: the tiny model with a random encoder at 32–40 px for 20 steps (a smoke test).

      python -m train.segnet --config train/configs/segnet.py:runlocal --workdir /tmp/segnet_runlocal

Paths: ``data_dir`` is relative to the repository root unless absolute (default ``../shared/data``).
"""
import dataclasses

import ml_collections

from jaxstyle import augment
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
  config.tfds_data_dir = ""
  config.resize = 448                      # shorter side of the resident images
  config.crop = 384
  config.max_aspect = 2.0
  config.flip = True
  config.batch_size = 16
  config.num_decode_threads = 8
  # Composites and photometric noise (jaxstyle/augment.py AugmentConfig; portraits source only).
  config.augment = ml_collections.ConfigDict(dataclasses.asdict(augment.AugmentConfig()))
  config.init_from = ""                    # a weights folder whose SegNet the run starts from

  config.lr = 3e-4
  config.warmup_steps = 100
  config.dice_weight = 1.0
  config.num_steps = 3000

  config.eval_size = 512                   # held-out portraits' longest side, as infer.portrait --size
  config.eval_feather = 0.01               # and --feather
  config.eval_every = 250
  config.num_samples = 6
  config.log_every = 10
  config.checkpoint_every = 100
  config.keep_checkpoints = 3
  config.export_every = 500
  config.export_dir = ""                   # default: WORKDIR/weights
  config.export_dtype = "float16"
  return config


def cpu_finetune(config):
  config.init_from = "weights"
  config.resize = 400
  config.crop = 320
  config.batch_size = 4
  config.lr = 1e-4
  config.warmup_steps = 20
  config.num_steps = 1000
  config.eval_every = 100
  config.log_every = 5
  config.checkpoint_every = 50
  config.export_every = 100


def coco_panoptic(config):
  config.source = "tfds"
  config.resize = 512
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
  config.augment.jpeg_prob = 0.0
  config.batch_size = 4
  config.lr = 3e-3
  config.warmup_steps = 2
  config.num_steps = 20
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.export_every = 20
  config.export_dtype = "float32"


VARIANTS = {"default": lambda config: None, "cpu_finetune": cpu_finetune, "coco_panoptic": coco_panoptic,
            "runlocal": runlocal}

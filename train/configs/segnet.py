r"""SegNet (person mask) training configs (``jaxstyle/training/segnet_training.py``).

Variants (``--config train/configs/segnet.py:VARIANT[,key=value...]``, or ``--config.FIELD=VALUE``):

- ``default``: the "shared_skip" SegNet decoder on the frozen ImageNet VGG-19, trained on the shared
  portraits (``portraits/`` with their hand-drawn or shipped masks, MediaPipe teacher masks where none
  exists) and person-free ``photos/``, all resident on the device: 448 px shorter side, 384² crops with
  flips, half of them a person pasted on a photo at 0.5–2× scale, a tenth a photo alone, then colour,
  blur, noise and JPEG noise (``jaxstyle/training/augment.py``); batch 16, Adam 3e-4 (100 warm-up steps, cosine to
  1%), BCE + Dice, 3000 steps (a reference run of this length, bfloat16 and without composites, trained at
  770 img/s in 134 s on one NVIDIA H200 on 2026-11-29: ``../shared/runs/README.md``). Every 250 steps:
  person IoU on a fixed 20% of the hand-drawn portraits (14 images) at 512 px through the CLI's path
  (``jaxstyle/training/segnet_eval.py``), beside the MediaPipe teacher's (0.972 on the same masks).

      python -m train.segnet --config train/configs/segnet.py --workdir runs/segnet

- ``cpu_finetune``: continues from a weights folder's SegNet (``init_from``, default the shipped
  ``weights/``) at 320² crops from 400 px images, batch 4, Adam 1e-4, in the background on a CPU.

      python -m train.segnet --config train/configs/segnet.py:cpu_finetune --workdir runs/segnet_cpu
- ``coco_panoptic``: COCO 2017 panoptic ``person`` masks through tfds (shorter side 512, 384² crops,
  batch 16, 20k steps); evaluated as ``default``, on the held-out hand-drawn portraits of ``data_dir``.

      python -m train.segnet --config train/configs/segnet.py:coco_panoptic --workdir runs/segnet_coco

- ``runlocal``: the tiny model with a random encoder at 32–40 px for 20 steps (a smoke test).

      python -m train.segnet --config train/configs/segnet.py:runlocal --workdir /tmp/segnet_runlocal

Paths: ``data_dir`` is relative to the repository root unless absolute (default ``../shared/data``).
"""
import dataclasses

import ml_collections

from jaxstyle.training import augment
from train.configs import common

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
  return common.get_config(default, VARIANTS, arg)


def default() -> ml_collections.ConfigDict:
  config = common.base()
  config.model = "default"                 # its ModelConfig.segnet must be a "shared" SegNet
  config.source = "portraits"              # portraits (shared folders, resident) | tfds
  config.negatives = True                  # person-free photos with all-zero targets
  config.photos_with_people = PHOTOS_WITH_PEOPLE
  config.holdout_fraction = 0.2            # of the hand-annotated portraits, for the person IoU
  config.tfds_name = "coco/2017_panoptic"
  config.split = "train"
  config.resize = 448                      # shorter side of the resident images
  config.crop = 384
  config.flip = True
  # Composites and photometric noise (jaxstyle/training/augment.py AugmentConfig; portraits source only).
  # Made from AugmentConfig's defaults, their one copy; read back by field name into Hparams.augment.
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
  config.log_every, config.checkpoint_every, config.export_every = 10, 100, 500
  return config


VARIANTS = {
    "default": {},
    "cpu_finetune": {"init_from": "weights", "resize": 400, "crop": 320, "batch_size": 4, "lr": 1e-4,
                     "warmup_steps": 20, "num_steps": 1000, "eval_every": 100, "log_every": 5,
                     "checkpoint_every": 50, "export_every": 100},
    "coco_panoptic": {"source": "tfds", "resize": 512, "num_steps": 20_000, "eval_every": 1000,
                      "checkpoint_every": 1000, "export_every": 5000},
    "runlocal": {**common.RUNLOCAL, "eval_size": 32, "augment.jpeg_prob": 0.0, "lr": 3e-3,
                 "warmup_steps": 2, "eval_every": 10},
}

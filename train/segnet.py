r"""Trains SegNet: ``python -m train.segnet --config train/configs/segnet.py[:variant] --workdir DIR``.

See ``train/configs/segnet.py`` for the variants and ``jaxstyle/training/segnet_training.py`` for the method.
"""
from jaxstyle.training import segnet_training
from train import main

if __name__ == "__main__":
  main.run(segnet_training.train_and_evaluate)

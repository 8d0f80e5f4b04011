r"""Trains SANet: ``python -m train.sanet --config train/configs/sanet.py[:variant] --workdir DIR``.

See ``train/configs/sanet.py`` for the variants and ``jaxstyle/training/sanet_training.py`` for the method.
"""
from jaxstyle.training import sanet_training
from train import main

if __name__ == "__main__":
  main.run(sanet_training.train_and_evaluate)

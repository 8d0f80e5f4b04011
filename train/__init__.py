"""Training entry points: ``python -m train.sanet`` and ``python -m train.segnet`` (``train/main.py``).

Importing this package or its configs defines no flags and starts nothing.
"""

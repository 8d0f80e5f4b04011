"""Experiments that measure jaxstyle programs (``python -m experiments.<name>``); results go to docs/."""

"""Command-line inference: ``python -m infer.portrait``."""

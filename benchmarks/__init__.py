"""Benchmarks of jaxstyle programs, run from the repository root as ``python -m benchmarks.<name>``;
results go to docs/."""

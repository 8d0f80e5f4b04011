"""Test settings: small CPU programs compile faster with most XLA optimisations off."""
import os

import jax

jax.config.update("jax_disable_most_optimizations", True)
os.environ.setdefault("JAXSTYLE_TEST", "1")

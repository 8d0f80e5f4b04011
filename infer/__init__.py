"""Command-line inference in a checkout: ``python -m infer.portrait`` and ``python -m infer.studio``,
aliases of ``jaxstyle portrait`` and ``jaxstyle studio`` (``jaxstyle.commands``)."""

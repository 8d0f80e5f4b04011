"""The command lines users run: ``jaxstyle portrait``, ``jaxstyle studio``, ``jaxstyle fetch``,
``jaxstyle convert`` (``main``, the installed console script). Each parses flags and calls one library
function; every refusal is one ``error:`` line and exit status 2 (``io.cli``). The top layer: may import
``io``, ``nets``, ``checkpoints``, ``program`` and ``app``. ``python -m infer.portrait`` and ``python -m
infer.studio`` in a checkout are aliases of these.
"""

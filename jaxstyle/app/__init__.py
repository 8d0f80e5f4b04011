"""What users call: stylising files and folders (``stylize_files``) and videos (``stylize_video``) from a
``request.Request``, the library behind ``python -m infer.portrait``. May import ``io``, ``nets``,
``checkpoints`` and ``program``; never ``training``. The entry points in ``infer/`` only parse flags.
"""

"""What users call: stylising files and folders (``stylize_files``) and videos (``stylize_video``) from a
``request.Request``, the library behind ``python -m infer.portrait``; what ``--content`` and ``--style``
name (``sources``: files, folders, lists, tfds datasets) and what a run over a collection keeps track of
(``collection``: each process's share, resuming, the run summary). May import ``io``, ``nets``,
``checkpoints`` and ``program``; never ``training``. The entry points in ``infer/`` only parse flags.
"""

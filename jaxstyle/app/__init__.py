"""What users call, one job a module (each imports at most four project modules: ``tests/test_layout``).

Files: ``stylize_files`` plans (``plan``: pairs, outputs, refusals, this process's share, what is done)
then runs (``pipeline``: ``reading`` decodes contents ahead into bucket batches, ``program.runner``
computes, ``writing`` saves behind and records each pair); ``sources`` says what ``--content`` and
``--style`` name; ``collection`` keeps a collection's shares, resumes and run summary; ``ray_engine``
runs a plan's pairs on a Ray cluster's actors instead (Ray imported only there). Video:
``stylize_video`` over ``clip``. The studio: ``studio`` (its pairs, cache and checks) and
``studio_ui`` (its Gradio page). ``request`` holds the ``Settings`` every caller shares, the CLI's
``Request`` and their checks. May import ``io``, ``nets``, ``checkpoints`` and ``program``; never
``training`` or ``commands``.
"""

"""The portrait program (segmentation, mask, both transfers, blend) as one jitted XLA function, and
what runs it well: the one way to call it (``runner``: weights loaded once, a ``portrait.Batch`` placed
on the ``data`` mesh, the call, out of memory as one line), the mesh (``sharding``), shape buckets
(``buckets``), the persistent compile cache (``compile_cache``), temporal mask smoothing for video
(``temporal``), and FLOP/memory counting for benchmarks (``profiling``). May import ``nets`` and
``checkpoints``; knows nothing of files, of training or of the user-facing runners.
"""

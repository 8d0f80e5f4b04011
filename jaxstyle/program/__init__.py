"""The portrait program (segmentation, mask, both transfers, blend) as one jitted XLA function, and
what runs it well: the ``data`` mesh (``sharding``), shape buckets (``buckets``), the persistent compile
cache (``compile_cache``), temporal mask smoothing for video (``temporal``), and FLOP/memory counting for
benchmarks (``profiling``). May import ``io``, ``nets`` and ``checkpoints``; knows nothing of training or
of the user-facing runners.
"""

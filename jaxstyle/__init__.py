"""jaxstyle: portrait-aware arbitrary style transfer (SANet + SegNet, Berezin & Volkova) in JAX/Flax.

The package is seven layers, each a subpackage that imports only the ones listed before it on its line
(``tests/test_layout.py`` holds this as data and fails on any other import):

- ``io``: files in and out (images, video, sheets, the weights format, whole-folder swap, one-line errors);
- ``nets``: the Flax networks of the paper and the model registry;
- ``checkpoints``: params from files (weights folders, the ImageNet VGG-19, PyTorch checkpoints) — io, nets;
- ``program``: the one XLA portrait program and what runs it on a mesh (``runner``) — nets, checkpoints;
- ``training``: the SANet and SegNet trainers and the person-IoU evaluation — io, nets, checkpoints, program;
- ``app``: what users call: stylising files and videos, the studio — io, nets, checkpoints, program;
- ``commands``: the ``jaxstyle`` command and its subcommands — io, nets, checkpoints, program, app.

Data shipped with the package (the default weights, the example pictures) lies in ``assets/``
(``io.assets``). In a checkout, ``train/`` (the trainers' entry points and configs) and ``infer/``
(``python -m`` aliases of the commands) are thin entry points over ``training`` and ``commands``.
"""

"""The networks of the paper as Flax modules, one file per component, and the model registry.

``vgg`` (the frozen encoder), ``sanet`` (style attention at relu4_1 and relu5_1), ``decoder``, ``segnet``
(person segmentation unpooling with the encoder's indices), ``losses``; ``conv`` (the one convolution,
formulated per backend), ``onednn`` (oneDNN convolutions and matmuls called through ``jax.ffi``, from the
compiled extension ``_onednn`` built out of ``csrc/``) and ``ops`` (parameter-free array ops) under them;
``model`` (configs as data, ``build``, ``init_params``, shape-only ``param_shapes``) over them. Pure array
code: imports nothing else of jaxstyle, reads no file.
"""

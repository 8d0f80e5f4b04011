"""Files in and out, and how a command ends: the bottom layer, importing nothing else of jaxstyle.

Images (``image_io``: one decoder, one suffix list, one atomic writer; every odd file becomes one
``ImageError``), video containers (``video``, PyAV), comparison sheets (``sheet``), the project's weights
format (``weights``: safetensors + a checked manifest) written whole (``folder_swap``), tfds datasets
read by index (``datasets``), and ``cli``: one ``error:`` line and exit 2 for every refusal. Everything
here treats a user's file as hostile.
"""

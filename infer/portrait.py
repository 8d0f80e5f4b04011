"""``python -m infer.portrait``: the ``jaxstyle portrait`` command in a checkout
(``jaxstyle.commands.portrait``, where its flags and documentation live)."""
import sys

from jaxstyle.commands.portrait import main

if __name__ == "__main__":
  sys.exit(main())

"""``python -m infer.studio``: the ``jaxstyle studio`` command in a checkout
(``jaxstyle.commands.studio``, where its flags and documentation live)."""
import sys

from jaxstyle.commands.studio import main

if __name__ == "__main__":
  sys.exit(main())

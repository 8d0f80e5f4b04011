"""``jaxstyle``: the installed command, one subcommand per thing users run.

    jaxstyle portrait --content me.jpg --style starry.jpg --output me_starry.png
    jaxstyle studio --port 7860
    jaxstyle fetch                 # the ImageNet VGG-19, once (``make setup`` does it in a checkout)
    jaxstyle convert --vgg vgg_normalised.pth --decoder ... --transform ... --out weights_sanet

Only the chosen subcommand's module is imported, so ``jaxstyle studio`` pays for Gradio and ``jaxstyle
portrait`` does not.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

# Subcommand → (module whose ``main(argv)`` runs it, arguments put before the user's, what it does).
COMMANDS = {
    "portrait": ("jaxstyle.commands.portrait", (), "stylise images, folders, lists or a video"),
    "studio": ("jaxstyle.commands.studio", (), "serve the local web studio"),
    "fetch": ("jaxstyle.checkpoints.pretrained", ("fetch",), "cache the ImageNet VGG-19 encoder (once)"),
    "convert": ("jaxstyle.checkpoints.pretrained", ("convert",),
                "turn the published SANet checkpoints into a weights folder"),
}


def usage() -> str:
  lines = ["usage: jaxstyle COMMAND [--help | options]", "", "commands:"]
  lines += [f"  {name:<10} {what}" for name, (_, _, what) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  args = list(sys.argv[1:] if argv is None else argv)
  if not args or args[0] in ("-h", "--help"):
    print(usage(), file=sys.stdout if args else sys.stderr)
    return 0 if args else 2
  if args[0] not in COMMANDS:
    print(f"error: unknown command {args[0]!r}; one of {', '.join(COMMANDS)} (see jaxstyle --help)",
          file=sys.stderr)
    return 2
  module, before, _ = COMMANDS[args[0]]
  return importlib.import_module(module).main([*before, *args[1:]])


if __name__ == "__main__":
  sys.exit(main())

"""How every jaxstyle command line ends: a result, or one ``error: ...`` line on stderr.

A refusal (an exception of a type the command names: bad input, bad weights, bad options) exits with
status 2; anything else is a bug and exits with 1; Ctrl-C with 130. Tracebacks are printed only with
``--debug`` or the environment variable ``JAXSTYLE_DEBUG=1``: a user who gave a broken file needs the one
line that names it, a developer can ask for the rest.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

DEBUG_ENV = "JAXSTYLE_DEBUG"


def debug_requested(argv: Sequence[str] | None = None) -> bool:
  """``--debug`` among ``argv`` (default ``sys.argv``) or ``JAXSTYLE_DEBUG=1``."""
  args = sys.argv[1:] if argv is None else argv
  return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(e: BaseException) -> str:
  """``e``'s message on one line (at most 2000 characters), or its type when it has none."""
  text = " ".join(str(e).split())
  if isinstance(e, MemoryError) and not text.startswith("out of memory"):
    # Python's own is raised with no message, or only the size asked for.
    return f"out of memory ({text or 'MemoryError'}): try smaller inputs"
  text = text or type(e).__name__
  return text if len(text) <= 2000 else text[:2000] + " ..."


def run(main: Callable[[], int], refusals: tuple[type[BaseException], ...], *, debug: bool) -> int:
  """``main()``'s exit status, with every exception turned into one ``error:`` line on stderr."""
  try:
    return main()
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    return 130
  except refusals as e:
    if debug:
      traceback.print_exc()
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except
    if debug:
      traceback.print_exc()
    print(f"error: unexpected {type(e).__name__}: {one_line(e)} (rerun with --debug or "
          f"{DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
    return 1


class UsageError(Exception):
  """Options that do not parse or do not fit together."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse that raises ``UsageError`` (a one-line refusal) instead of printing usage and exiting;
  its subcommand parsers do too."""

  def error(self, message):
    raise UsageError(f"{message} (see --help)")

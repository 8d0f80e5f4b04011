"""``jaxstyle``, the installed command: each subcommand is its module's ``main``, imported on demand."""
import subprocess
import sys

import pytest

from jaxstyle.commands import main as jaxstyle_main


def test_help_lists_every_subcommand(capsys):
  assert jaxstyle_main.main(["--help"]) == 0
  out = capsys.readouterr().out
  for name in jaxstyle_main.COMMANDS:
    assert f"  {name} " in out


@pytest.mark.parametrize("argv, words", [([], ["usage: jaxstyle"]),
                                         (["stylize"], ["error: unknown command 'stylize'", "portrait"])])
def test_no_or_an_unknown_subcommand_is_refused(argv, words, capsys):
  assert jaxstyle_main.main(argv) == 2
  err = capsys.readouterr().err
  assert all(w in err for w in words), err


def test_a_subcommand_gets_the_rest_of_the_arguments(capsys):
  """``jaxstyle portrait`` is ``python -m infer.portrait``: the same refusal of a missing flag."""
  assert jaxstyle_main.main(["portrait", "--style", "s.jpg"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: the following arguments are required: --content") and err.count("\n") == 1


def test_only_the_chosen_subcommand_is_imported():
  code = ("import sys; from jaxstyle.commands import main; "
          "main.main(['portrait', '--style', 's']); print('gradio' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert proc.stdout.strip() == "False", proc.stderr

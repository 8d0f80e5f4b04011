"""``pip install .`` outside a checkout: the wheel alone finds its weights, examples, extension, command.

The wheel is built as ``pip wheel .`` builds it (scikit-build-core, the oneDNN extension compiled into
it), installed without its dependencies into a fresh virtual environment in a temporary folder, and run
from another temporary folder, so nothing of the repository is on its path. The dependencies (JAX,
Flax, ...) come from this test's own environment through a ``.pth`` file: no network, and what is
tested is the package itself, not PyPI. The ImageNet VGG-19 comes from the user's cache, where the
setup step (``jaxstyle fetch``) put it.
"""
import os
import platform
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BUILD_SECONDS = 900   # a cold build: the isolated build environment and the extension's compile


def run(argv, **kw):
  proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
  assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
  return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(the fresh environment's bin folder, the wheel) with the wheel installed there."""
  tmp = tmp_path_factory.mktemp("wheel")
  # A build folder of its own: the checkout's (build/, kept for `pip install -e .`) is left as it is.
  run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", tmp / "dist",
       f"--config-settings=build-dir={tmp / 'build'}"], cwd=tmp, timeout=BUILD_SECONDS)
  wheel, = (tmp / "dist").glob("jaxstyle-*.whl")
  run([sys.executable, "-m", "venv", tmp / "fresh"], timeout=120)
  bin_dir = tmp / "fresh" / "bin"
  run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], timeout=300)
  purelib = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                ).stdout.strip()
  (Path(purelib) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  return bin_dir, wheel


def clean_env(**extra):
  """This environment without the repository on any path, the compile cache off (tests never fill it)."""
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  return {**env, "JAXSTYLE_COMPILE_CACHE": "0", **extra}


def test_the_wheel_holds_the_weights_the_examples_and_the_command(installed):
  _, wheel = installed
  names = set(zipfile.ZipFile(wheel).namelist())
  for name in ("MANIFEST.json", "MODEL_CARD.md", "decoder.safetensors", "transform.safetensors",
               "segnet.safetensors"):
    assert f"jaxstyle/assets/weights/{name}" in names
  assert "jaxstyle/assets/examples/content/astronaut.jpg" in names
  entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
  assert "jaxstyle = jaxstyle.commands.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
  if sys.platform == "linux" and platform.machine() == "x86_64":
    assert any(n.startswith("jaxstyle/nets/_onednn") and n.endswith(".so") for n in names)


def test_the_installed_command_stylises_a_pair_outside_the_checkout(installed, tmp_path):
  bin_dir, _ = installed
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  probe = run([bin_dir / "python", "-c",
               "import jaxstyle; from jaxstyle.io import assets; from jaxstyle.nets import onednn; "
               "print(jaxstyle.__file__); print(assets.examples('content')); print(onednn.unavailable())"],
              cwd=elsewhere, env=clean_env(), timeout=120).stdout.splitlines()
  package, examples, unavailable = probe[-3:]
  fresh = bin_dir.parent.resolve()
  assert Path(package).resolve().is_relative_to(fresh) and Path(examples).resolve().is_relative_to(fresh)
  if sys.platform == "linux" and platform.machine() == "x86_64":
    assert unavailable == "None", unavailable            # the extension built into the wheel loads

  help_text = run([bin_dir / "jaxstyle", "--help"], cwd=elsewhere, env=clean_env(), timeout=60).stdout
  assert "portrait" in help_text and "studio" in help_text
  content = Path(examples) / "astronaut.jpg"
  style = Path(examples).parent / "styles" / "great_wave.jpg"
  out = elsewhere / "astronaut__great_wave.png"
  proc = run([bin_dir / "jaxstyle", "portrait", "--content", content, "--style", style, "--output", out,
              "--size", "64"], cwd=elsewhere, env=clean_env(), timeout=600)
  assert proc.stdout.strip() == str(out) and "Traceback" not in proc.stderr
  image = np.asarray(Image.open(out))
  assert max(image.shape[:2]) == 64 and image.std() > 1   # a picture, from the shipped weights

"""Multi-host: 2 processes on localhost (CPU collectives over gloo), each with 1 CPU device.

Both trainers, started as 2 processes through ``jax.distributed`` (flags, as on a cluster), train a few
steps on the same resident data as a 1-process run and must report the same loss at every step; a
SIGTERM or SIGINT to one process stops both at one step (``distributed.StopFlag``); the scaling tool
(configured through the ``JAX_*`` environment variables) measures a 2-process mesh.
"""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from test_data import make_shared_data  # pylint: disable=g-bad-import-order

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", "XLA_FLAGS": ""}
TIMEOUT_S = 600


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(argv: list[str], processes: int, *, flags: bool = True) -> list[str]:
  """Runs ``python argv…`` as ``processes`` processes of one ``jax.distributed`` job; their logs.

  ``flags``: the trainers' absl flags, else the ``JAX_*`` environment variables.
  """
  port = free_port()
  procs = []
  for i in range(processes):
    env, extra = dict(ENV), []
    if processes > 1 and flags:
      extra = [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
               f"--process_id={i}"]
    elif processes > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=str(processes),
                 JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen([sys.executable, *argv, *extra], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i} of {processes} failed:\n{log[-4000:]}"
  return logs


def losses(workdir: Path) -> dict[int, float]:
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  out = {}
  for l in lines:
    if "loss" in l:
      assert l["step"] not in out, "two processes wrote metrics"
      out[l["step"]] = l["loss"]
  return out


def run_trainer(trainer: str, config_args: list[str], tmp_path: Path) -> tuple[dict, dict, list[str]]:
  """(1-process losses, 2-process losses, the 2-process logs)."""
  runs = {}
  for n in (1, 2):
    workdir = tmp_path / f"{n}proc"
    logs = launch(["-m", f"train.{trainer}", f"--config=train/configs/{trainer}.py:runlocal",
                   *config_args, f"--workdir={workdir}"], n)
    runs[n] = (losses(workdir), logs)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert (workdir / "weights" / "MANIFEST.json").exists()
  return runs[1][0], runs[2][0], runs[2][1]


def check_same_losses(one: dict, two: dict, logs: list[str]) -> None:
  assert "process 0 of 2, 1 local / 2 global devices" in logs[0]
  assert "process 1 of 2, 1 local / 2 global devices" in logs[1]
  assert sorted(one) == sorted(two) == [1, 2, 3, 4]
  # Same data and params; the batch is split over 2 devices, so only the reduction order differs.
  np.testing.assert_allclose([two[s] for s in sorted(two)], [one[s] for s in sorted(one)], rtol=1e-5)
  assert len(set(one.values())) == 4                      # the loss moves: the steps are real updates


STOP_LOOP = textwrap.dedent("""
    import sys, time
    from jaxstyle.program import sharding
    from jaxstyle.training import distributed
    sharding.initialize_distributed(sys.argv[1], 2, int(sys.argv[2]))
    with distributed.StopFlag() as stop:
      for step in range(6000):          # a minute at most
        if stop.should_stop(step):
          print("stopped at", step, "by", stop.signal, flush=True)
          break
        if step == 5:
          print("looping", flush=True)
        time.sleep(0.01)
""")


@pytest.mark.parametrize("signum,target", [(signal.SIGTERM, 1), (signal.SIGINT, 0)])
def test_a_signal_to_one_process_stops_both_at_one_step(signum, target):
  port = free_port()
  procs = [subprocess.Popen([sys.executable, "-c", STOP_LOOP, f"localhost:{port}", str(i)], cwd=ROOT,
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  try:
    for p in procs:
      while (line := p.stdout.readline()) and "looping" not in line:
        pass
    time.sleep(0.5)
    procs[target].send_signal(signum)
    logs = [p.communicate(timeout=120)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  stops = [[l for l in log.splitlines() if l.startswith("stopped at")] for log in logs]
  assert all(p.returncode == 0 for p in procs), logs
  assert stops[0] == stops[1] and len(stops[0]) == 1 and stops[0][0].endswith("by SIGTERM"), logs


STEPS = ["--config.num_steps=4", "--config.checkpoint_every=2", "--config.log_every=1"]


def test_sanet_two_processes_match_one_process(tiny_folders, tmp_path):
  one, two, logs = run_trainer("sanet", [
      f"--config.data_dir={tiny_folders / 'data'}", "--config.resize=36", "--config.sample_every=100",
      "--config.export_every=100", *STEPS], tmp_path)
  check_same_losses(one, two, logs)


def test_segnet_two_processes_match_one_process(tmp_path):
  root = make_shared_data(tmp_path / "data")
  one, two, logs = run_trainer("segnet", [
      f"--config.data_dir={root}", "--config.resize=16", "--config.crop=16", "--config.eval_size=32",
      "--config.eval_every=2", "--config.export_every=100", "--config.photos_with_people=photo1.jpg",
      *STEPS], tmp_path)
  check_same_losses(one, two, logs)


def test_scaling_tool_on_two_processes(tmp_path):
  logs = launch(["-m", "experiments.scaling", "--what", "infer", "--model", "tiny", "--resolutions",
                 "32", "--batches", "2", "--dtypes", "float32", "--repeats", "2", "--out",
                 str(tmp_path)], 2, flags=False)
  assert "2 × CPU" in logs[0] and "(2 process(es))" in logs[0]
  assert "configurations" not in logs[1]                 # only process 0 reports and writes
  with open(tmp_path / "scaling_infer.csv") as f:
    rows = list(csv.DictReader(f))
  # With 2 processes every device count is a multiple of 2: strong (global 2) and weak (2 per device).
  assert [(r["scaling"], r["devices"], r["global_batch"], r["status"]) for r in rows] == [
      ("strong", "2", "2", "ok"), ("weak", "2", "4", "ok")]
  assert "multi-process mechanics" in (tmp_path / "scaling_infer.md").read_text()


@pytest.mark.parametrize("n_total,processes,expected", [(2, 2, [2]), (8, 2, [2, 4, 8]), (6, 2, [2, 4, 6])])
def test_device_counts_are_multiples_of_the_process_count(n_total, processes, expected):
  from experiments import scaling  # pylint: disable=g-import-not-at-top
  assert scaling.device_counts(n_total, None, processes) == expected
  assert scaling.device_counts(n_total, [1, 2, 3, 4], processes) == [n for n in (2, 4) if n <= n_total]

"""A/B of the VGG max-pool: the previous argmax pool against ``ops.max_pool_with_indices``.

Both versions of the portrait and plain programs are compiled in one process (the previous pool and
unpool are kept below as ``argmax_pool`` / ``onehot_unpool``, patched in while tracing) and timed
interleaved — A, B, A, B, … per round — so a change of machine load hits both alike. Outputs are
compared (max |Δ| of every output). Prints the median wall ms per call and the median process CPU ms
(user + system of all threads: on a shared, oversubscribed machine the steadier measure of the work
done) and the ratios previous / current (> 1: the current is faster).

    nice -n 5 python -m benchmarks.maxpool_ab --size 512 --rounds 5
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import scaling
from jaxstyle.nets import model
from jaxstyle.nets import segnet
from jaxstyle.nets import vgg
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding


def argmax_pool(x):
  """The previous pool: 4 strided views stacked on a new axis, max and argmax over it."""
  h, w = x.shape[1], x.shape[2]
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  views = jnp.stack([x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]], axis=-1)
  return views.max(axis=-1), views.argmax(axis=-1).astype(jnp.int8)


def onehot_unpool(x, indices, out_hw):
  """The previous unpool: one-hot × value, the window axes moved into place."""
  b, h, w, c = x.shape
  onehot = jax.nn.one_hot(indices, 4, dtype=x.dtype) * x[..., None]
  up = onehot.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)
  return up[:, :out_hw[0], :out_hw[1]]


@contextlib.contextmanager
def previous_pool():
  """The previous pool and unpool in place of ``ops``' where the encoder and SegNet call them."""
  saved = vgg.max_pool_with_indices, segnet.max_unpool
  vgg.max_pool_with_indices, segnet.max_unpool = argmax_pool, onehot_unpool
  try:
    yield
  finally:
    vgg.max_pool_with_indices, segnet.max_unpool = saved


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--model", default="default", choices=tuple(model.MODEL_CONFIGS))
  p.add_argument("--dtype", default="float32")
  p.add_argument("--modes", default="plain,portrait")
  args = p.parse_args(argv)
  cfg = dataclasses.replace(model.MODEL_CONFIGS[args.model], dtype=args.dtype)
  device = jax.devices()[0]
  mesh = sharding.data_mesh([device])
  params = jax.device_put(scaling.random_params(cfg), device)
  rng = np.random.default_rng(0)
  shape = (args.batch, args.size, args.size, 3)
  call_args = (params, portrait.Batch(*(jax.device_put(rng.uniform(size=shape).astype(np.float32), device)
                                       for _ in "cs")),
               portrait.Controls().as_array())
  print(f"{profiling.device_name(device)}, jax {jax.__version__}, {args.model} model, {args.size}² ×{args.batch} "
        f"{args.dtype}, load average {os.getloadavg()[0]:.2f}", flush=True)
  programs = {}
  for mode in args.modes.split(","):
    with previous_pool():
      programs[(mode, "previous")] = portrait.make_program(cfg, mesh, mode=mode).lower(*call_args).compile()
    programs[(mode, "current")] = portrait.make_program(cfg, mesh, mode=mode).lower(*call_args).compile()
    outs = [jax.block_until_ready(programs[(mode, v)](*call_args)) for v in ("previous", "current")]
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])))
    print(f"  {mode}: compiled both; max |Δ| of every output, previous vs current: {diff:.1e}", flush=True)
  wall = {k: [] for k in programs}
  cpu = {k: [] for k in programs}
  for _ in range(args.rounds):
    for k, compiled in programs.items():
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(compiled(*call_args))
      wall[k].append(time.perf_counter() - t0)
      cpu[k].append(time.process_time() - c0)
  print(f"load average after: {os.getloadavg()[0]:.2f}; {args.rounds} interleaved rounds")
  print("| program | previous wall ms | current wall ms | ratio | previous CPU ms | current CPU ms | ratio |")
  print("|---|---|---|---|---|---|---|")
  for mode in args.modes.split(","):
    pw, cw = (statistics.median(wall[(mode, v)]) * 1e3 for v in ("previous", "current"))
    pc, cc = (statistics.median(cpu[(mode, v)]) * 1e3 for v in ("previous", "current"))
    print(f"| {mode} {args.size}² ×{args.batch} {args.dtype} | {pw:.0f} | {cw:.0f} | {pw / cw:.3f} "
          f"| {pc:.0f} | {cc:.0f} | {pc / cc:.3f} |")


if __name__ == "__main__":
  main()

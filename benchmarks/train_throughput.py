r"""Train-step throughput: compile time, step time and img/s of the SANet or SegNet step (not a test).

Runs the real jitted step on synthetic device-resident data (random uint8 images, crops taken inside the
step, as the ``shared_data`` configs do) with a random encoder (speed does not depend on the weights),
over every combination of the given batch sizes, crops and dtypes, and prints a table:

    python -m benchmarks.train_throughput --trainer sanet --config train/configs/sanet.py:shared_data \
        --batch_sizes 8,32 --crops 256 --dtypes float32,bfloat16 --steps 20

On CPU use small sizes (``--model tiny --crops 64``). Add ``--json FILE`` to keep the rows.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import time

import jax
import numpy as np

from jaxstyle.program import profiling
from jaxstyle.program import sharding
from jaxstyle.training import encoder_weights
from jaxstyle.training import loop
from jaxstyle.training import sanet_training
from jaxstyle.training import segnet_training


def load_config(spec: str):
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def synthetic_resident(n: int, size: int, channels: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"pixels": rng.integers(0, 256, (n, size, 2 * size, channels), dtype=np.uint8),
          "widths": rng.integers(size, 2 * size + 1, n).astype(np.int32),
          "transposed": rng.integers(0, 2, n).astype(bool)}


def bench(trainer: str, config, *, model: str, batch: int, crop: int, dtype: str, steps: int,
          images: int, formulation: str = "auto") -> dict:
  config = config.copy_and_resolve_references()
  config.model, config.batch_size, config.crop, config.dtype = model, batch, crop, dtype
  config.formulation = formulation
  config.resize = max(config.resize, crop)
  mesh = sharding.data_mesh()
  module = sanet_training if trainer == "sanet" else segnet_training
  hp = module.hparams_from_config(config)
  with jax.set_mesh(mesh):
    _, init = loop.abstract_train_state(functools.partial(module.init_trainable, hp),
                                            module.make_optimizer(hp), jax.random.PRNGKey(0), mesh)
    state = init(jax.random.PRNGKey(0))
    frozen = sharding.place_replicated(mesh, encoder_weights.frozen_encoder("random", hp.model, 0)[0])
    if trainer == "sanet":
      data = {k: synthetic_resident(images, config.resize, 3, i) for i, k in enumerate(("content", "style"))}
    else:   # people with their masks (RGB + alpha) composited over backgrounds, as segnet_training does
      data = {"people": synthetic_resident(images, config.resize, 4, 0),
              "backgrounds": synthetic_resident(images, config.resize, 3, 1)}
    data = sharding.place_replicated(mesh, data)
    t0 = time.perf_counter()
    step = module.train_step.lower(state, frozen, data, hp=hp).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = step(state, frozen, data)          # warm-up
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, frozen, data)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / steps
  return {"trainer": trainer, "model": model, "dtype": dtype, "batch": batch, "crop": crop,
          "compile_s": round(compile_s, 2), "step_ms": round(1000 * step_s, 2),
          "img_per_s": round(batch / step_s, 2), "device": profiling.device_description()}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--trainer", choices=("sanet", "segnet"), default="sanet")
  parser.add_argument("--config", default=None, help="config file[:variant] (default: the trainer's)")
  parser.add_argument("--model", default="default", help="key of model.MODEL_CONFIGS")
  parser.add_argument("--batch_sizes", default="8")
  parser.add_argument("--crops", default="256")
  parser.add_argument("--dtypes", default="float32")
  parser.add_argument("--formulation", default="auto", help="conv formulation (jaxstyle/nets/conv.py)")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--images", type=int, default=64, help="synthetic resident images")
  parser.add_argument("--json", default=None, help="also write the rows here")
  args = parser.parse_args()
  config = load_config(args.config or f"train/configs/{args.trainer}.py")
  rows = []
  header = f"{'trainer':7} {'model':8} {'dtype':9} {'batch':>5} {'crop':>5} {'compile s':>10} " \
           f"{'step ms':>9} {'img/s':>9}"
  print(header)
  for batch, crop, dtype in itertools.product(map(int, args.batch_sizes.split(",")),
                                              map(int, args.crops.split(",")), args.dtypes.split(",")):
    r = bench(args.trainer, config, model=args.model, batch=batch, crop=crop, dtype=dtype,
              steps=args.steps, images=args.images, formulation=args.formulation)
    rows.append(r)
    print(f"{r['trainer']:7} {r['model']:8} {r['dtype']:9} {r['batch']:5d} {r['crop']:5d} "
          f"{r['compile_s']:10.1f} {r['step_ms']:9.1f} {r['img_per_s']:9.2f}", flush=True)
  print(f"device: {rows[0]['device']}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()

"""GFLOP per image of each component of the portrait program, from XLA's cost analysis of its lowering.

    python -m benchmarks.flop_breakdown --size 512 --out /tmp/flops_512.json
    python -m benchmarks.flop_breakdown --size 1024 --dtype bfloat16 --formulation same

Nothing runs and no weights exist: every step of ``portrait.stylize`` (``encode``, ``attend``,
``identity_transfer``, ``mix``, ``decode``, ``segment``, ``blend_weight``, ``blend``) is lowered on
abstract inputs (``jax.ShapeDtypeStruct``; params from ``model.param_shapes``) with the shapes the
program gives it, and so is the whole program (``portrait.make_program``, portrait and plain mode) for
comparison; the steps must add up to the whole (``tests/test_flop_breakdown.py``). The identity transfer
is counted as computed (XLA counts the larger branch of a ``lax.cond``); the program skips it when every
α is 1, as in plain mode at the default controls.

FLOPs and bytes are counted on the lowered module (``jaxstyle.program.profiling``): a compiled GPU program
hides cuDNN convolutions in custom calls that its cost analysis counts as zero. Two corrections:

- ``--formulation`` defaults to ``xla``, the convolutions a GPU runs (``"auto"`` is ``"same"`` on CPU,
  whose decoder upsample-convs do fewer FLOPs; see ``jaxstyle/nets/conv.py``).
- XLA's cost analysis counts a while loop's body once. The attention runs in query chunks under
  ``lax.map`` whenever a level has more queries than one chunk (relu4_1 from 1024² on), so the program
  is counted on ``model.unchunked(cfg)`` (``one_chunk``: the same arithmetic when the chunk divides
  the query count, as for every power-of-two side). The whole program as XLA counts it with its real
  chunks is reported too (``whole_chunked``); it undercounts the attention by the number of chunks.

Bytes are the lowered module's ``bytes accessed`` (unfused: every HLO op reads its operands from and
writes its result to memory, an upper bound on traffic) and each component's inputs + params + outputs
(the traffic if the component were one fused kernel, a lower bound); FLOP/byte against both brackets
the arithmetic intensity. Prints a markdown table; ``--out`` also writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp

from jaxstyle.nets import conv as conv_lib
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding

FEATHER = portrait.FEATHER   # portrait.stylize's default


@dataclasses.dataclass(frozen=True)
class Component:
  name: str
  fn: Callable[..., Any]      # pure function of ``args``
  args: tuple                 # abstract arguments (ShapeDtypeStruct pytrees)


# ---------------------------------------------------------------------------------------- counting


def model_config(name: str, dtype: str, formulation: str) -> model_lib.ModelConfig:
  return dataclasses.replace(model_lib.MODEL_CONFIGS[name], dtype=dtype, formulation=formulation)


def nbytes(tree) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def io_bytes(fn: Callable[..., Any], args: tuple) -> int:
  """Bytes of the inputs ``fn`` reads (params it does not use left out) and of its outputs."""
  closed = jax.make_jaxpr(fn)(*args)
  read = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, jax_core.Var)}
  read |= {v for v in closed.jaxpr.outvars if isinstance(v, jax_core.Var)}
  return nbytes([v.aval for v in closed.jaxpr.invars if v in read]) + nbytes(closed.out_avals)


def cost(fn: Callable[..., Any], args: tuple) -> dict[str, float | None]:
  """FLOPs, unfused bytes accessed and inputs + outputs bytes of ``fn`` lowered on abstract ``args``."""
  lowered = jax.jit(fn).lower(*args)
  return {"flops": profiling.flops(lowered), "bytes_unfused": profiling.bytes_accessed(lowered),
          "bytes_io": float(io_bytes(fn, args))}


# -------------------------------------------------------------------------------------- components


def abstract_inputs(cfg: model_lib.ModelConfig, size: int, batch: int) -> tuple:
  """(params, content, style, controls) as ShapeDtypeStructs; the params are never materialised."""
  params = model_lib.param_shapes(cfg)
  image = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  return params, image, image, jax.ShapeDtypeStruct((2, 3), jnp.float32)


def content_keys(cfg: model_lib.ModelConfig) -> tuple[str, ...]:
  """Content VGG features the program consumes: the transfer's and SegNet's (which shares the encoder)."""
  seg = cfg.segnet
  keys = ["relu4_1", "relu5_1", seg.start] + [f"pool{level}_indices" for level, _ in seg.stages]
  keys += [feature for _, feature in seg.skips]        # skip fusions' encoder features
  return tuple(dict.fromkeys(keys))


def encode(cfg, keys, params, image):
  """``portrait.encode`` keeping the features the program consumes (the others are not outputs)."""
  feats = portrait.encode(params, cfg, image)
  return {k: feats[k] for k in keys}


def segment(cfg, params, content, feats):
  """The person mask as the program makes it: SegNet (at every ``cfg.segnet_sides`` too), feathered."""
  return portrait.segment(params, cfg, content, FEATHER, feats)


def components(cfg: model_lib.ModelConfig, size: int, batch: int, mode: str = "portrait") -> list[Component]:
  """``portrait.stylize``'s steps with the abstract arguments it gives them, in program order.

  The identity transfer is counted as computed: XLA counts the larger branch of its ``lax.cond``
  (it is skipped when every α is 1, e.g. plain mode at the default controls).
  """
  params, content, style, controls = abstract_inputs(cfg, size, batch)
  regions = 2 if mode == "portrait" else 1
  controls = jax.ShapeDtypeStruct((regions, 3), controls.dtype)
  alpha = jax.ShapeDtypeStruct((regions,), controls.dtype)
  hw = (size, size)
  shape = jax.eval_shape
  keys = content_keys(cfg) if mode == "portrait" else ("relu4_1", "relu5_1")
  enc_c = functools.partial(encode, cfg, keys)
  enc_s = functools.partial(encode, cfg, ("relu4_1", "relu5_1"))
  cf, sf = shape(enc_c, params, content), shape(enc_s, params, style)
  att = functools.partial(portrait.attend, cfg=cfg)
  ident = functools.partial(portrait.identity_transfer, cfg=cfg)
  mix = functools.partial(portrait.mix, cfg=cfg)
  dec = functools.partial(portrait.decode, cfg=cfg, hw=hw)
  o_s = shape(att, params, content_feats=cf, style_feats=sf)
  o_c = shape(ident, params, content_feats=cf, alpha=alpha)
  t = shape(mix, params, stylised=o_s, identity=o_c, controls=controls)
  out = [
      Component("VGG-19 encode (content)", enc_c, (params, content)),
      Component("VGG-19 encode (style)", enc_s, (params, style)),
      Component("SANet attention c→s (relu4_1+relu5_1)",
                lambda p, c, s: att(p, content_feats=c, style_feats=s), (params, cf, sf)),
      Component("SANet attention identity c→c", lambda p, c, a: ident(p, content_feats=c, alpha=a),
                (params, cf, alpha)),
      Component("weigh + merge conv", lambda p, o, i, k: mix(p, stylised=o, identity=i, controls=k),
                (params, o_s, o_c, controls)),
      Component(f"decoder ({regions} region{'s' * (regions > 1)})", lambda p, x: dec(p, t=x), (params, t)),
  ]
  if mode == "portrait":
    seg = functools.partial(segment, cfg)
    images = shape(lambda p, x: dec(p, t=x), params, t)
    mask = shape(seg, params, content, cf)   # the probability has the mask's shape and dtype
    weight = functools.partial(portrait.blend_weight, feather=FEATHER)
    out += [Component("SegNet mask (decoder + feather)", seg, (params, content, cf)),
            Component("blend weight (edge inside the outline)", weight, (mask,)),
            Component("blend", portrait.blend, (shape(weight, mask), images))]
  return out


def whole(cfg: model_lib.ModelConfig, size: int, batch: int, mode: str) -> dict[str, float | None]:
  """The jitted program (``portrait.make_program`` on one device) as the benchmarks run it."""
  program = portrait.make_program(cfg, sharding.data_mesh(jax.devices()[:1]), mode=mode)
  params, content, style, controls = abstract_inputs(cfg, size, batch)
  lowered = program.lower(params, portrait.Batch(content, style), controls)
  return {"flops": profiling.flops(lowered), "bytes_unfused": profiling.bytes_accessed(lowered)}


def breakdown(cfg: model_lib.ModelConfig, size: int, batch: int, one_chunk: bool = True) -> dict:
  """Per-component and whole-program costs of ``cfg`` at ``size``², per image."""
  per_img = lambda c: {k: (None if v is None else v / batch) for k, v in c.items()}
  counted = model_lib.unchunked(cfg) if one_chunk else cfg
  rows = [{"component": c.name, **per_img(cost(c.fn, c.args))} for c in components(counted, size, batch)]
  plain = [{"component": c.name, **per_img(cost(c.fn, c.args))}
           for c in components(counted, size, batch, "plain")]
  portrait_total = per_img(whole(counted, size, batch, "portrait"))
  plain_total = per_img(whole(counted, size, batch, "plain"))
  chunked = per_img(whole(cfg, size, batch, "portrait"))
  total = sum(r["flops"] for r in rows)
  for r in rows:
    r["share"] = r["flops"] / portrait_total["flops"]
  return {"size": size, "batch": batch, "dtype": cfg.dtype, "formulation": cfg.formulation,
          "one_chunk": one_chunk, "components": rows, "sum_flops": total, "whole": portrait_total,
          "plain_components": plain, "plain_sum_flops": sum(r["flops"] for r in plain),
          "whole_plain": plain_total, "whole_chunked": chunked}


# ------------------------------------------------------------------------------------------ output


def _g(x, scale=1e9, nd=1):
  return "—" if x is None else f"{x / scale:,.{nd}f}"


def _intensity(flops, nbytes_):
  return "—" if not flops or not nbytes_ else f"{flops / nbytes_:,.1f}"


def markdown(r: dict, model: str) -> str:
  lines = [f"FLOPs per image, {model} model, {r['size']}², batch {r['batch']}, {r['dtype']}, "
           f"conv formulation {r['formulation']!r}"
           f"{', attention counted as one chunk' if r['one_chunk'] else ''} "
           "(XLA cost analysis of the lowering)",
           "",
           "| component | GFLOP/img | share | MB/img unfused | FLOP/B unfused | MB/img in+out "
           "| FLOP/B in+out |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for c in r["components"]:
    lines.append(f"| {c['component']} | {_g(c['flops'])} | {100 * c['share']:.1f}% | "
                 f"{_g(c['bytes_unfused'], 1e6, 0)} | {_intensity(c['flops'], c['bytes_unfused'])} | "
                 f"{_g(c['bytes_io'], 1e6, 1)} | {_intensity(c['flops'], c['bytes_io'])} |")
  w, p, ch = r["whole"], r["whole_plain"], r["whole_chunked"]
  lines += [
      f"| **sum of components** | **{_g(r['sum_flops'])}** | "
      f"{100 * r['sum_flops'] / w['flops']:.2f}% | | | | |",
      f"| **whole portrait program** | **{_g(w['flops'])}** | 100% | {_g(w['bytes_unfused'], 1e6, 0)} | "
      f"{_intensity(w['flops'], w['bytes_unfused'])} | | |",
      f"| whole plain program (sum of its components: {_g(r['plain_sum_flops'])}) | {_g(p['flops'])} | "
      f"{100 * p['flops'] / w['flops']:.1f}% | {_g(p['bytes_unfused'], 1e6, 0)} | "
      f"{_intensity(p['flops'], p['bytes_unfused'])} | | |",
  ]
  if r["one_chunk"]:
    lines.append(f"| whole portrait program, chunked attention as XLA counts it (loop body once) | "
                 f"{_g(ch['flops'])} | {100 * ch['flops'] / w['flops']:.1f}% | | | | |")
  return "\n".join(lines)


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--size", type=int, default=512, help="content and style side (pixels)")
  ap.add_argument("--batch", type=int, default=1)
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
  ap.add_argument("--model", default="default", choices=sorted(model_lib.MODEL_CONFIGS))
  ap.add_argument("--formulation", default="xla", choices=conv_lib.FORMULATIONS,
                  help="conv formulation; 'xla' is what a GPU runs ('auto' resolves on this backend)")
  ap.add_argument("--chunked", action="store_true",
                  help="count the attention with its real query chunks (XLA counts a loop body once)")
  ap.add_argument("--out", type=Path, help="also write the numbers as JSON")
  return ap.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  cfg = model_config(args.model, args.dtype, args.formulation)
  result = breakdown(cfg, args.size, args.batch, one_chunk=not args.chunked)
  result["model"] = args.model
  print(markdown(result, args.model))
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()

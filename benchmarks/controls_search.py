"""The portrait program's default controls, re-chosen by the quality harness on its training-side pairs.

    python -m benchmarks.controls_search --out out/controls_search     # ~1 h on 2 CPU cores
    python -m benchmarks.controls_search --steps person                 # one step; the others keep today's
    python -m benchmarks.controls_search --steps edge                   # round 3: where the blend's edge lies
    python -m benchmarks.controls_search --steps style_scale,plain_style_scale --dtype bfloat16   # round 5
    python -m benchmarks.controls_search --pick-paintings 3             # how SEARCH_PAINTINGS grew

Pairs: ``quality.SEARCH_PORTRAITS`` × ``quality.SEARCH_PAINTINGS``, disjoint from the held-out pairs
the harness reports on (``quality.PORTRAITS`` × ``quality.PAINTINGS``), center-cropped squares as there.
Measures: ``quality.measure`` (style gain per region from Magenta's style predictor, Face Mesh NME and
faces lost, background structure): the harness's networks, regions and rules.

The two regions are decoded apart and meet only in the blend, so the search is separable and cheap:
each pair is prepared once (``portrait.make_split_programs``: features, both attentions, the identity
transfer, SegNet's mask), a region's (W1, W2, α) costs one ``transfer`` per pair, an edge one
``composite``. Three steps, each a coarse grid and then a finer one around the coarse pick:

1. background (W1, W2) at α = 1, blended with today's person transfer (and, for the record only, α
   beyond 1 at W = (1, 1): ``BACKGROUND_ALPHA_BEYOND``);
2. person (W1, W2, α) under the step-1 background;
3. the blend's edge: the feather σ × how far inside the outline it is centred (``portrait.blend_weight``'s
   ``inset``); it moves both regions' share of the picture near the outline.

Checks, over all pairs (``CHECKS``): the background keeps ≥ 0.9 × the structure plain SANet keeps there
(style gain is not bought by erasing the scene); no face is lost and the face NME is no worse than the
Magenta + MediaPipe-mask blend's, its person restyled at the candidate's α as the harness does; the
person's style gain is ≥ 0.5 × plain SANet's. Picks:

- background: the feasible candidate with the highest background style gain, taken over today's value
  only when its gain over today's, pair by pair, is significant (mean > 2 standard errors): a difference
  within the spread of the pairs is no reason to change a default;
- edge: of the feasible candidates whose background gain over today's is significant, the one whose
  person checks pass with the widest margin (``margin``): the edge trades the background's style against
  the person's edge, and the face checks are the ones that failed on unseen pairs before (round 1);
- person: the feasible candidate whose two person checks pass with the widest relative margin
  (``margin``), so that they still hold on pairs the search never saw; when none passes every check,
  faces come first (``faces_first``): the most person style among the candidates that keep every face.

Every candidate's means go to ``search.csv`` as they are measured.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from benchmarks import quality
from jaxstyle.app import request
from jaxstyle.checkpoints import loading
from jaxstyle.io import image_io
from jaxstyle.program import portrait
from jaxstyle.program import sharding

STEPS = ("background", "person", "edge", "style_scale", "plain_style_scale")
# The style's longest side ÷ the content's, per region (step ``style_scale``, jointly with the person's α,
# which trades against the person's scale), and plain SANet's (step ``plain_style_scale``).
STYLE_SCALES_BACKGROUND, STYLE_SCALES_PERSON = (1.0, 0.83, 0.67, 0.5), (1.0, 0.83, 0.67)
STYLE_SCALE_ALPHAS = (0.3, 0.4, 0.5)
BACKGROUND_W = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)            # coarse W1 × W2 at α = 1
# Background α beyond 1 (past the full transfer, away from T(c, c)): measured and reported, never picked:
# α = 1 with W = (1, 1) *is* plain SANet, which portrait mode's background shows and --mode plain runs.
BACKGROUND_ALPHA_BEYOND = (1.1, 1.25, 1.5)
PERSON_W1, PERSON_W2, PERSON_ALPHA = (0.75, 1.0, 1.5, 2.0), (0.0, 0.2, 0.5), (0.4, 0.5, 0.6, 0.7)
FEATHERS, INSETS = (0.005, 0.01, 0.02, 0.03), (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)   # inset < 3: blend_weight
FINE_W, FINE_ALPHA, FINE_FEATHER = (-0.25, -0.125, 0.125, 0.25), (-0.05, -0.025, 0.025, 0.05), (-0.0025, 0.0025)
FINE_INSET, MAX_INSET = (-0.25, 0.25), 2.75
CHECKS = {"today": ("background_kept", "face_kept", "person_styled"),
          "background_alpha": ("background_kept",),
          "background": ("background_kept",),      # the person keeps today's controls in step 1
          "person": ("background_kept", "face_kept", "person_styled"),
          "edge": ("background_kept", "face_kept", "person_styled"),
          "style_scale": ("background_kept", "face_kept", "person_styled"),
          "plain_style_scale": ("background_kept",)}


@dataclasses.dataclass(frozen=True)
class Candidate:
  background: tuple[float, float, float]   # (W1, W2, α)
  person: tuple[float, float, float]
  feather: float
  inset: float = portrait.EDGE_INSET
  style_scale_background: float = 1.0
  style_scale_person: float = 1.0

  def controls(self) -> portrait.Controls:
    (w1b, w2b, ab), (w1p, w2p, ap) = self.background, self.person
    return portrait.Controls(w1b, w2b, ab, w1p, w2p, ap)


@dataclasses.dataclass
class Judge:
  """The harness's measures on a set of pairs, everything about the contents and paintings computed once."""
  pairs: Sequence[quality.Pair]
  data_dir: Path
  size: int
  predictor: quality.StylePredictor
  media: quality.MediaPipe

  def __post_init__(self):
    self.paintings = {p.painting: self.predictor.embed(quality.load(p.style)) for p in self.pairs}
    self.contents = {}
    for p in self.pairs:
      if p.portrait not in self.contents:
        image = quality.load(p.content)
        person = quality.reference_mask(self.data_dir, p.portrait, self.size)[0] >= 0.5
        self.contents[p.portrait] = (image, person, self.media.landmarks(image), {
            "background": self.predictor.embed(quality.region_image(image, ~person)),
            "person": self.predictor.embed(quality.region_image(image, person))})

  def rows(self, outputs: dict) -> list[dict]:
    """``quality.measure`` of ``outputs[(portrait, painting)]`` for every pair, in ``pairs`` order."""
    rows = []
    for p in self.pairs:
      image, person, face, vecs = self.contents[p.portrait]
      rows.append(quality.measure(image, outputs[p.portrait, p.painting], person,
                                  self.paintings[p.painting], vecs, face, self.predictor, self.media))
    return rows


def means(rows: Sequence[dict]) -> dict[str, float]:
  return {"nme": quality.mean_or_nan([r["nme"] for r in rows]),
          "faces_lost": sum(r["face_lost"] for r in rows),
          **{k: quality.mean_or_nan([r[k] for r in rows])
             for k in ("background_style_gain", "person_style_gain", "background_structure",
                       "person_structure")}}


def checks(m: dict, plain: dict, reference_nme: float) -> dict[str, bool]:
  return {"background_kept": m["background_structure"] >= 0.9 * plain["background_structure"],
          "face_kept": m["faces_lost"] == 0 and m["nme"] <= reference_nme,
          "person_styled": m["person_style_gain"] >= 0.5 * plain["person_style_gain"]}


def margin(m: dict, plain: dict, reference_nme: float) -> float:
  """The smaller relative margin of the two person checks: how far NME stays under the reference and
  the person's style gain over half of plain SANet's (negative: a check fails)."""
  return min(1 - m["nme"] / reference_nme, m["person_style_gain"] / (0.5 * plain["person_style_gain"]) - 1)


def significantly_higher(new: Sequence[float], old: Sequence[float]) -> bool:
  """Paired per-pair values: is the mean of ``new − old`` more than 2 standard errors above 0?"""
  d = np.asarray(new, np.float64) - np.asarray(old, np.float64)
  d = d[np.isfinite(d)]
  return d.size > 1 and d.mean() > 2 * d.std(ddof=1) / np.sqrt(d.size)


def faces_first(rows: Sequence[dict]) -> int | None:
  """The person pick when no candidate passes every check: of the rows that keep every face (and the
  background), the one with the most person style; None if none keeps them. Portrait mode exists to keep
  faces, so the person's share of the style is what gives way."""
  kept = [i for i, r in enumerate(rows) if r["background_kept"] and r["face_kept"]]
  return max(kept, key=lambda i: rows[i]["person_style_gain"]) if kept else None


def farthest_first(vectors: dict[str, np.ndarray], start: Sequence[str], k: int) -> list[str]:
  """``k`` more names of ``vectors``, each the one farthest (Euclidean) from every name chosen so far:
  paintings spread over the style space the harness measures in, picked by a rule rather than by eye."""
  chosen, picks = list(start), []
  for _ in range(k):
    rest = [n for n in vectors if n not in chosen]
    if not rest:
      break
    pick = max(rest, key=lambda n: min(float(np.linalg.norm(vectors[n] - vectors[c])) for c in chosen))
    chosen.append(pick)
    picks.append(pick)
  return picks


def training_side_paintings(names: Iterable[str]) -> list[str]:
  """The image files of ``names`` that are neither a held-out painting nor a version of one."""
  return sorted(n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png")) and n not in quality.PAINTINGS
                and not any(word in n.lower() for word in quality.HELD_OUT_PAINTING_WORDS))


def around(value: float, steps: Iterable[float], lo: float, hi: float) -> list[float]:
  return sorted({round(min(hi, max(lo, value + s)), 4) for s in (0.0, *steps)})


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--data", default=str(quality.REPO.parent / "shared" / "data"))
  ap.add_argument("--weights", default=str(quality.REPO / "weights"))
  ap.add_argument("--out", default=str(quality.REPO / "out" / "controls_search"))
  ap.add_argument("--size", type=int, default=384)
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                  help="jaxstyle's compute dtype (%(default)s; bf16 on a CPU with bf16 units is ~3× faster)")
  ap.add_argument("--portraits", type=int, default=len(quality.SEARCH_PORTRAITS),
                  help="only the first N search portraits (a quick check of the tool)")
  ap.add_argument("--steps", default=",".join(STEPS),
                  help=f"which of {', '.join(STEPS)} to search; a step left out keeps today's default")
  ap.add_argument("--pick-paintings", type=int, default=0, metavar="K",
                  help="print the K training-side paintings farthest from quality.HAND_PICKED_PAINTINGS in "
                       "the style predictor's space (how SEARCH_PAINTINGS was extended) and stop")
  args = ap.parse_args(argv)
  steps = set(args.steps.split(","))
  if not steps <= set(STEPS):
    ap.error(f"--steps: {sorted(steps - set(STEPS))} not in {STEPS}")
  t0 = time.perf_counter()
  log = lambda message: print(f"[{time.perf_counter() - t0:6.0f} s] {message}", flush=True)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  predictor = quality.StylePredictor()
  if args.pick_paintings:
    vectors = {}
    for name in training_side_paintings(p.name for p in (Path(args.data) / "styles").iterdir()):
      with Image.open(Path(args.data) / "styles" / name) as im:
        square = quality.square_crop(im.convert("RGB"), args.size)
      vectors[name] = predictor.embed(np.asarray(square, np.float32) / 255)
    print("\n".join(farthest_first(vectors, quality.HAND_PICKED_PAINTINGS, args.pick_paintings)))
    return 0
  media = quality.MediaPipe()
  params, cfg = loading.load(args.weights, dtype=args.dtype)
  program = portrait.make_split_programs(cfg, sharding.data_mesh())
  # The split program's composite at the shipped inset; the edge step varies it (a compile per value).
  composite = jax.jit(portrait.composite, static_argnames=("mode", "max_feather", "inset"))
  w_range, alpha_range = (0.0, 4.0), (0.0, 1.0)   # the CLI's (app/request.py)

  with tempfile.TemporaryDirectory() as tmp:
    pairs = quality.prepare(Path(args.data), quality.SEARCH_PORTRAITS[:args.portraits],
                            quality.SEARCH_PAINTINGS, args.size, Path(tmp))
    judge = Judge(pairs, Path(args.data), args.size, predictor, media)
    log(f"{len(pairs)} pairs at {args.size}²: preparing")
    prepared = {(p.portrait, p.painting): program.prepare(
        params, portrait.Batch(quality.load(p.content)[None], quality.load(p.style)[None])) for p in pairs}
    regions: dict[tuple, dict] = {}
    styles = {(p.portrait, p.painting): p.style for p in pairs}

    def region(controls: tuple[float, float, float], scale: float = 1.0) -> dict:
      """One region's images ``[1, 1, H, W, 3]`` per pair at ``controls``, its style read at ``scale`` ×
      the pairs' side as the CLI reads it (``request.style_sides``); the last few kept."""
      key = controls, scale
      if key not in regions:
        if len(regions) > 20:
          regions.pop(next(iter(regions)))
        c = jnp.asarray([controls], jnp.float32)
        regions[key] = {k: program.transfer(params, v, c) for k, v in restyled(scale).items()}
      return regions[key]

    last_restyled: dict[float, dict] = {}

    def restyled(scale: float) -> dict:
      """Every pair prepared with its style at ``scale`` (``restyle``: the style's pass and attention
      only); the last scale's kept, since the grid's inner loop keeps a scale over several α."""
      side = request.style_sides(request.Settings(size=args.size, style_scale_background=scale))[0][0]
      if side == args.size:
        return prepared
      if scale not in last_restyled:
        last_restyled.clear()
        last_restyled[scale] = {k: program.restyle[0](params, v, image_io.load_image(styles[k], side)[None], None)
                                for k, v in prepared.items()}
      return last_restyled[scale]

    def outputs(c: Candidate) -> dict:
      bg, person = region(c.background, c.style_scale_background), region(c.person, c.style_scale_person)
      return {k: np.asarray(composite(v, jnp.concatenate([bg[k], person[k]]), c.feather, False,
                                      max_feather=portrait.MAX_FEATHER, inset=c.inset)["image"][0])
              for k, v in prepared.items()}

    plain_rows = judge.rows({k: np.asarray(v[0, 0]) for k, v in region((1.0, 1.0, 1.0)).items()})
    plain = means(plain_rows)
    log("plain SANet: " + ", ".join(f"{k} {v:.4g}" for k, v in plain.items()))
    reference: dict[float, float] = {}

    def reference_nme(alpha: float) -> float:
      if alpha not in reference:
        blends = quality.magenta_outputs(pairs, media, person_strength=alpha)["magenta+mask"]
        reference[alpha] = means(judge.rows(blends))["nme"]
        log(f"Magenta + mask, person at strength {alpha:g}: face NME {reference[alpha]:.4f}")
      return reference[alpha]

    with open(out / "search.csv", "w", newline="") as f:
      writer = None
      judged: dict[Candidate, tuple[dict, list[dict]]] = {}

      def judge_one(step: str, c: Candidate) -> dict:
        if c in judged:
          return judged[c][0]
        rows = judge.rows(outputs(c))
        m = means(rows)
        ref = reference_nme(c.person[2])
        ok = checks(m, plain, ref)
        row = {"step": step, **dataclasses.asdict(c.controls()), "feather": c.feather, "inset": c.inset,
               "style_scale_background": c.style_scale_background, "style_scale_person": c.style_scale_person, **m,
               "magenta_mask_nme": ref, "plain_person_style_gain": plain["person_style_gain"],
               "plain_background_structure": plain["background_structure"], **ok,
               "feasible": all(ok[k] for k in CHECKS[step]), "margin": margin(m, plain, ref)}
        judged[c] = row, rows
        nonlocal writer
        if writer is None:
          writer = csv.DictWriter(f, fieldnames=list(row))
          writer.writeheader()
        writer.writerow({k: f"{v:.5f}" if isinstance(v, float) else v for k, v in row.items()})
        f.flush()
        log(f"{step}: {c} background gain {m['background_style_gain']:.4f} person gain "
            f"{m['person_style_gain']:.4f} NME {m['nme']:.4f}/{ref:.4f} lost {m['faces_lost']} "
            f"structure {m['background_structure']:.3f}{'' if row['feasible'] else ' (fails)'}")
        return row

      def best(step: str, candidates: Iterable[Candidate], key: Callable[[dict], float]) -> Candidate:
        candidates = list(candidates)
        feasible = [c for c in candidates if judge_one(step, c)["feasible"]]
        if feasible:
          return max(feasible, key=lambda c: key(judged[c][0]))
        i = faces_first([judged[c][0] for c in candidates]) if step == "person" else None
        if i is None:
          raise SystemExit(f"{step}: no candidate passes {', '.join(CHECKS[step])}; see {out / 'search.csv'}")
        log(f"person: no candidate passes every check; faces first: {candidates[i]}")
        return candidates[i]

      gains = lambda c: [r["background_style_gain"] for r in judged[c][1]]

      def keep_unless_better(step: str, today: Candidate, pick: Candidate) -> Candidate:
        better = significantly_higher(gains(pick), gains(today))
        log(f"{step}: {pick} {'replaces' if better else 'is not significantly better than'} {today}")
        return pick if better else today

      c = portrait.Controls()   # today's defaults
      today = Candidate((c.w1_background, c.w2_background, c.alpha_background),
                        (c.w1_person, c.w2_person, c.alpha_person), portrait.FEATHER, portrait.EDGE_INSET)
      bg_gain = lambda r: r["background_style_gain"]
      judge_one("today", today)
      chosen = today
      if "background" in steps:
        grid = lambda w1s, w2s: [dataclasses.replace(today, background=(w1, w2, 1.0))
                                 for w1 in w1s for w2 in w2s]
        pick = best("background", grid(BACKGROUND_W, BACKGROUND_W), bg_gain)
        pick = best("background", grid(around(pick.background[0], FINE_W, *w_range),
                                       around(pick.background[1], FINE_W, *w_range)), bg_gain)
        chosen = keep_unless_better("background", today, pick)
        for alpha in BACKGROUND_ALPHA_BEYOND:
          judge_one("background_alpha", dataclasses.replace(today, background=(1.0, 1.0, alpha)))

      if "person" in steps:
        by_margin = lambda r: r["margin"]
        persons = lambda w1s, w2s, alphas: [dataclasses.replace(chosen, person=p)
                                            for p in itertools.product(w1s, w2s, alphas)]
        pick = best("person", persons(PERSON_W1, PERSON_W2, PERSON_ALPHA), by_margin)
        w1, w2, alpha = pick.person
        chosen = best("person", persons(around(w1, FINE_W, *w_range), (w2,),
                                        around(alpha, FINE_ALPHA, *alpha_range)), by_margin)

      if "edge" in steps:
        edges = lambda feathers, insets: [dataclasses.replace(chosen, feather=f, inset=i)
                                          for f in feathers for i in insets]
        step_today = chosen

        def widest_margin_beating_today(candidates: list[Candidate]) -> Candidate | None:
          admitted = [c for c in candidates if judge_one("edge", c)["feasible"]
                      and significantly_higher(gains(c), gains(step_today))]
          return max(admitted, key=lambda c: judged[c][0]["margin"]) if admitted else None

        pick = widest_margin_beating_today(edges(FEATHERS, INSETS))
        if pick is not None:
          fine = edges(around(pick.feather, FINE_FEATHER, 0.0, portrait.MAX_FEATHER),
                       around(pick.inset, FINE_INSET, 0.0, MAX_INSET))
          chosen = widest_margin_beating_today(fine)   # not None: the fine grid holds the coarse pick
        log(f"edge: {chosen} {'replaces' if chosen != step_today else 'is'} today's edge")

      if "style_scale" in steps:
        # Rule fixed before the run: of the candidates that pass every check, the highest background
        # style gain, taken over today's only when its gain is significantly higher pair by pair.
        candidates = [dataclasses.replace(chosen, style_scale_background=b, style_scale_person=p,
                                          person=(*chosen.person[:2], a))
                      for b in STYLE_SCALES_BACKGROUND for p in STYLE_SCALES_PERSON for a in STYLE_SCALE_ALPHAS]
        pick = best("style_scale", candidates, bg_gain)
        chosen = keep_unless_better("style_scale", chosen, pick)

    plain_scale = 1.0
    if "plain_style_scale" in steps:
      # Plain SANet is the background region alone: the same rule, with the background's check only.
      plain_rows = {s: judge.rows({k: np.asarray(v[0, 0]) for k, v in region((1.0, 1.0, 1.0), s).items()})
                    for s in STYLE_SCALES_BACKGROUND}
      plain_base = means(plain_rows[1.0])
      with open(out / "plain_style_scale.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["style_scale", "background_style_gain", "background_structure", "feasible"])
        feasible = {}
        for s, rows in plain_rows.items():
          m = means(rows)
          feasible[s] = m["background_structure"] >= 0.9 * plain_base["background_structure"]
          writer.writerow([s, f"{m['background_style_gain']:.5f}", f"{m['background_structure']:.5f}", feasible[s]])
          log(f"plain at style scale {s:g}: background gain {m['background_style_gain']:.4f} structure "
              f"{m['background_structure']:.3f}{'' if feasible[s] else ' (fails)'}")
      gain = lambda s: [r["background_style_gain"] for r in plain_rows[s]]
      pick = max((s for s in plain_rows if feasible[s]), key=lambda s: means(plain_rows[s])["background_style_gain"])
      plain_scale = pick if significantly_higher(gain(pick), gain(1.0)) else 1.0
      log(f"plain: style scale {plain_scale:g}")

  log(f"chosen: {chosen.controls()}, feather {chosen.feather:g}, inset {chosen.inset:g}, style scales "
      f"{chosen.style_scale_background:g} (background), {chosen.style_scale_person:g} (person), "
      f"{plain_scale:g} (plain) (every candidate: {out / 'search.csv'})")
  return 0


if __name__ == "__main__":
  sys.exit(main())

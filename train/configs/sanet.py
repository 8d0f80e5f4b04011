r"""SANet training configs (``jaxstyle/sanet_training.py``).

Variants (``--config train/configs/sanet.py:VARIANT``; extra ``key=value`` pairs after a comma override
fields, e.g. ``:shared_data,crop=128,style.folders=styles+photos``; any field also with
``--config.FIELD=VALUE``):

- ``default``: the published SANet setup. Content: COCO 2017 train via tfds; style: a WikiArt folder
  (``$data_dir/wikiart``); shorter side 512, random 256² crops, batch 5, Adam 1e-4 with inverse-time decay
  5e-5, λc = 1, λs = 3, λid1 = 50 (pixels), λid2 = 1 (features), 160k steps, frozen ImageNet VGG-19
  as shipped, its loss features divided by their mean activations (``encoder``; the shipped weights).

      python -m train.sanet --config train/configs/sanet.py --workdir runs/sanet_default

  Expected (measured only for the first steps, on 2 CPU cores at 64–128 px with ``shared_data``): total
  loss ~190 over steps 1–10 and ~155 by step 80 (identity-feature ~70 and style ~25 dominate; content ~2.9),
  then falling slowly; sample grids are still noise after 300 steps. The paper's quality needs the full
  160k steps (not yet run; hours on one GPU).
- ``seed_paper``: as ``default`` but with the identity weights as the paper's text prints them
  (λid1 = 1, λid2 = 50; the published code uses 50 and 1).
- ``shared_data``: content = ``photos/`` + ``portraits/``, style = ``styles/`` of the shared data folder,
  decoded once and kept on the device (random crops inside the step); sizes configurable. The quality
  harness's held-out portraits and paintings (``QUALITY_HELD_OUT_*``, ``benchmarks/quality.py``) are
  excluded by file stem, so they stay unseen however the folders are packed (the weights shipped before
  this exclusion saw them: ``docs/quality.md``).

      python -m train.sanet --config train/configs/sanet.py:shared_data --workdir runs/sanet_shared \
          --config.batch_size=32 --config.num_steps=20000

  Expected: as ``default``; GPU throughput not yet measured (``benchmarks/train_throughput.py``). On 2
  CPU cores at 128² crops, batch 2: ~7 s/step (0.28 img/s), compile ~65 s.
- ``runlocal``: the tiny model, a random encoder, 32 px crops of the shared folders, 20 steps — a smoke
  test on a laptop CPU in under a minute:

      python -m train.sanet --config train/configs/sanet.py:runlocal --workdir /tmp/sanet_runlocal

Continuing from a weights folder (``init_weights=DIR``): when the workdir has no checkpoint, the decoder
and transform start from ``DIR``'s exported weights and the step counter (hence the learning-rate decay
and the random streams) from the steps its manifest records; Adam's moments start at zero (exports do not
carry them). ``scripts/gpu_train_sanet.sh`` continues the shipped ``weights/`` this way.

Paths: ``data_dir`` is relative to the repository root unless absolute (default ``../shared/data``,
the shared folder beside a checkout); image folders are relative to ``data_dir`` unless absolute.
"""
import ml_collections

# Never trained on (``shared_data``): the pairs of ``benchmarks/quality.py``. Portraits with one face that
# MediaPipe Face Mesh finds at 384 px, a person mask and some background; the two public-domain ones
# first (their sheets may be committed). Paintings: public domain.
QUALITY_HELD_OUT_PORTRAITS = (
    "skimage_astronaut.jpg", "mpl_grace_hopper.jpg", "celebamaskhq_1.jpg",
    "facerec_lin-manuel-miranda.png", "facerec_obama.jpg", "facerec_biden2.jpg", "u2net_portrait_man4.jpg",
    "u2net_portrait_kid2.jpg", "portseg_kid8.jpg", "neuralstyle_brad_pitt.jpg", "adain_lenna.jpg",
    "bgmatting_0500_img.jpg", "u2net_human_julia_trotti_17.jpg")
# Van Gogh 1889, Hokusai c. 1831, Kandinsky 1913, Matisse 1905.
QUALITY_HELD_OUT_PAINTINGS = ("titu_starry_night.jpg", "titu_wave_kanagawa.jpg",
                              "sanet_Composition-VII.jpg", "adain_woman_with_hat_matisse.jpg")


def stems(names) -> tuple[str, ...]:
  """File names without their suffix: packing (``scripts/pack_images.py``) re-encodes as JPEG."""
  return tuple(name.rsplit(".", 1)[0] for name in names)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, overrides = parse_arg(arg)
  config = default()
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; one of {sorted(VARIANTS)}")
  VARIANTS[variant](config)
  for key, value in overrides.items():
    override(config, key, value)
  return config


def parse_arg(arg: str | None) -> tuple[str, dict[str, str]]:
  """``"variant,key=value,..."`` → (variant, overrides) as in big_vision ``configs/common.py``."""
  parts = [p for p in (arg or "").split(",") if p]
  variant = "default"
  if parts and "=" not in parts[0]:
    variant = parts.pop(0)
  return variant, dict(p.split("=", 1) for p in parts)


def override(config: ml_collections.ConfigDict, key: str, value: str) -> None:
  """Sets the (dotted) field ``key`` from a string, converted to the field's type."""
  *parents, leaf = key.split(".")
  for p in parents:
    config = config[p]
  old = config[leaf]
  if isinstance(old, bool):
    config[leaf] = value.lower() in ("1", "true", "yes")
  elif isinstance(old, tuple):
    config[leaf] = tuple(v for v in value.split("+") if v)
  else:
    config[leaf] = type(old)(value)


def default() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = "default"                 # key of portrait.MODEL_CONFIGS
  config.dtype = "float32"                 # compute dtype ("bfloat16" on GPUs); params stay float32
  config.formulation = "auto"              # conv formulation (jaxstyle/conv.py)
  # imagenet_normalised: the ImageNet VGG-19 (jaxstyle.pretrained) rescaled per block to unit mean
  # activation (training.normalised_vgg; exported with the weights), the scale SANet's λs and lr were
  # tuned on; imagenet: as shipped (0–255 inputs, features 10²–10³× larger: losses are normalised instead,
  # but the decoder/transform see large inputs and the first ~100 steps are spent shrinking the decoder);
  # random: tests.
  config.encoder = "imagenet"             # the shipped weights were trained with this
  config.seed = 0
  config.init_weights = ""                 # a weights folder to continue from (see the docstring)

  config.data_dir = "../shared/data"
  # exclude: file stems never read from the folders (the quality harness's held-out images).
  config.content = ml_collections.ConfigDict(
      {"source": "tfds", "name": "coco/2017", "split": "train", "folders": (), "exclude": ()})
  config.style = ml_collections.ConfigDict(
      {"source": "folder", "name": "", "split": "train", "folders": ("wikiart",), "exclude": ()})
  config.tfds_data_dir = ""                # tfds data_dir ("" = tfds' default)
  config.resident = False                  # decode folders once, crop on the device
  config.resize = 512                      # shorter side before cropping
  config.crop = 256
  config.max_aspect = 2.0                  # resident: longer side kept up to max_aspect × resize
  config.batch_size = 5                    # global
  config.num_decode_threads = 8
  config.prefetch = 4

  config.lr = 1e-4
  config.lr_decay = 5e-5                   # lr / (1 + lr_decay · step), SANet's adjust_learning_rate
  config.loss = ml_collections.ConfigDict(
      {"content": 1.0, "style": 3.0, "identity_pixel": 50.0, "identity_feature": 1.0})
  config.num_steps = 160_000

  config.log_every = 50
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  config.sample_every = 1000
  config.num_samples = 4
  config.export_every = 10_000
  config.export_dir = ""                   # default: WORKDIR/weights
  config.export_dtype = "float16"
  return config


def seed_paper(config):
  config.loss.identity_pixel = 1.0
  config.loss.identity_feature = 50.0


def shared_data(config):
  config.content.source = "folder"
  config.content.folders = ("photos", "portraits")
  config.content.exclude = stems(QUALITY_HELD_OUT_PORTRAITS)
  config.style.folders = ("styles",)
  config.style.exclude = stems(QUALITY_HELD_OUT_PAINTINGS)
  config.resident = True
  config.batch_size = 8
  config.num_steps = 20_000
  config.log_every = 20
  config.sample_every = 500
  config.export_every = 2000


def runlocal(config):
  shared_data(config)
  config.model = "tiny"
  config.encoder = "random"
  config.formulation = "xla"               # compiles 4× faster than the CPU matmul form at tiny sizes
  config.resize = 40
  config.crop = 32
  config.batch_size = 4
  config.num_steps = 20
  config.log_every = 5
  config.checkpoint_every = 10
  config.sample_every = 10
  config.export_every = 20
  config.export_dtype = "float32"


VARIANTS = {"default": lambda config: None, "seed_paper": seed_paper, "shared_data": shared_data,
            "runlocal": runlocal}

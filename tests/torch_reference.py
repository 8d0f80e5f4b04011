"""PyTorch reference modules: the published SANet code (Park & Lee 2019) and torchvision's VGG-19.

Layer for layer the modules of the SANet authors' ``net.py``/``test.py`` (the ``vgg`` and ``decoder``
``nn.Sequential``s, ``SANet``, ``Transform``) and of ``torchvision.models.vgg19().features``, so that
state dicts saved from them have the keys of the published checkpoints. Used by the equivalence tests
and benchmarks only: the library never imports torch. Import with ``tests/`` on ``sys.path``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# Slices of the published ``vgg`` Sequential that end at relu1_1 .. relu5_1 (``enc_1`` .. ``enc_5``).
VGG_NORMALISED_SLICES = ((0, 4), (4, 11), (11, 18), (18, 31), (31, 44))
# Indices of relu1_1 .. relu5_1 in torchvision's ``vgg19().features``.
TORCHVISION_RELU_INDICES = (1, 6, 11, 20, 29)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def vgg_normalised() -> nn.Sequential:
  """The published encoder (``vgg_normalised.pth``): 1×1 conv, reflection padding, ceil-mode pools."""
  def block(cin, cout):
    return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]

  def pool():
    return [nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)]

  return nn.Sequential(
      nn.Conv2d(3, 3, (1, 1)),
      *block(3, 64), *block(64, 64), *pool(),                                        # relu1_1 = 3
      *block(64, 128), *block(128, 128), *pool(),                                    # relu2_1 = 10
      *block(128, 256), *block(256, 256), *block(256, 256), *block(256, 256), *pool(),  # relu3_1 = 17
      *block(256, 512), *block(512, 512), *block(512, 512), *block(512, 512), *pool(),  # relu4_1 = 30
      *block(512, 512), *block(512, 512), *block(512, 512), *block(512, 512),           # relu5_1 = 43
  )


def decoder() -> nn.Sequential:
  """The published decoder (``decoder_iter_*.pth``)."""
  def conv(cin, cout, relu=True):
    layers = [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3))]
    return layers + [nn.ReLU()] if relu else layers

  up = lambda: [nn.Upsample(scale_factor=2, mode="nearest")]
  return nn.Sequential(
      *conv(512, 256), *up(),
      *conv(256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128), *up(),
      *conv(128, 128), *conv(128, 64), *up(),
      *conv(64, 64), *conv(64, 3, relu=False),
  )


def vgg19_features() -> nn.Sequential:
  """``torchvision.models.vgg19().features`` (zero padding, floor-mode pools)."""
  layers, cin = [], 3
  for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M"):
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      cin = v
  return nn.Sequential(*layers)


class VGG19Torchvision(nn.Module):
  """torchvision's ``VGG`` holder, so the state dict keys are ``features.N.weight``."""

  def __init__(self):
    super().__init__()
    self.features = vgg19_features()


def calc_mean_std(feat, eps=1e-5):
  size = feat.size()
  assert len(size) == 4
  n, c = size[:2]
  feat_var = feat.view(n, c, -1).var(dim=2) + eps
  feat_std = feat_var.sqrt().view(n, c, 1, 1)
  feat_mean = feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1)
  return feat_mean, feat_std


def mean_variance_norm(feat):
  size = feat.size()
  mean, std = calc_mean_std(feat)
  return (feat - mean.expand(size)) / std.expand(size)


class SANet(nn.Module):

  def __init__(self, in_planes):
    super().__init__()
    self.f = nn.Conv2d(in_planes, in_planes, (1, 1))
    self.g = nn.Conv2d(in_planes, in_planes, (1, 1))
    self.h = nn.Conv2d(in_planes, in_planes, (1, 1))
    self.sm = nn.Softmax(dim=-1)
    self.out_conv = nn.Conv2d(in_planes, in_planes, (1, 1))

  def forward(self, content, style):
    F = self.f(mean_variance_norm(content))
    G = self.g(mean_variance_norm(style))
    H = self.h(style)
    b, c, h, w = F.size()
    F = F.view(b, -1, w * h).permute(0, 2, 1)
    b, c, h, w = G.size()
    G = G.view(b, -1, w * h)
    S = torch.bmm(F, G)
    S = self.sm(S)
    b, c, h, w = H.size()
    H = H.view(b, -1, w * h)
    O = torch.bmm(H, S.permute(0, 2, 1))
    b, c, h, w = content.size()
    O = O.view(b, c, h, w)
    O = self.out_conv(O)
    O += content
    return O


class Transform(nn.Module):

  def __init__(self, in_planes):
    super().__init__()
    self.sanet4_1 = SANet(in_planes=in_planes)
    self.sanet5_1 = SANet(in_planes=in_planes)
    self.upsample5_1 = nn.Upsample(scale_factor=2, mode="nearest")
    self.merge_conv_pad = nn.ReflectionPad2d((1, 1, 1, 1))
    self.merge_conv = nn.Conv2d(in_planes, in_planes, (3, 3))

  def forward(self, content4_1, style4_1, content5_1, style5_1):
    return self.merge_conv(self.merge_conv_pad(
        self.sanet4_1(content4_1, style4_1) + self.upsample5_1(self.sanet5_1(content5_1, style5_1))))


def encode_normalised(vgg: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
  """relu1_1 .. relu5_1 of the published encoder, chained as ``enc_1`` .. ``enc_5`` in test.py."""
  out = {}
  for name, (a, b) in zip(STYLE_LAYERS, VGG_NORMALISED_SLICES):
    x = vgg[a:b](x)
    out[name] = x
  return out


def encode_torchvision(features: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
  """relu1_1 .. relu5_1 of torchvision's VGG-19 for an already mean/std-normalised input."""
  out, start = {}, 0
  for name, end in zip(STYLE_LAYERS, TORCHVISION_RELU_INDICES):
    x = features[start:end + 1](x)
    out[name], start = x, end + 1
  return out


def stylize(vgg, decoder_net, transform, content, style) -> torch.Tensor:
  """The published test.py pipeline (NCHW, [0, 1]), clipped to [0, 1] as ``save_image`` does."""
  c, s = encode_normalised(vgg, content), encode_normalised(vgg, style)
  out = decoder_net(transform(c["relu4_1"], s["relu4_1"], c["relu5_1"], s["relu5_1"]))
  return out.clamp(0, 1)


def he_init_(module: nn.Module, bias_std: float = 0.05, seed: int = 0) -> nn.Module:
  """Re-initialises every conv with He-normal weights and small random biases (keeps activations in
  range through 17 ReLU layers, so equivalence tests compare signals rather than vanishing values)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_std)
  return module

"""Network stage: the torch models, and saving/loading them with a model card.

Two architectures share one interface (Patterson grid in, atom map out):

* ``unet`` (default): a small 3D U-Net.  Three stride-2 levels reach a 4^3
  bottleneck whose receptive field spans the whole Patterson window -- the
  problem is global, every atom depends on vectors across the box -- at a
  fraction of the compute of long chains of large kernels.  GroupNorm keeps
  training stable at small batch sizes.  The output window is cropped to the
  region where centred atoms can lie (see target.output_box_edge), which saves
  the most expensive full-resolution layers.
* ``hurwitz2020``: the paper's network (2 x Conv 5^3, MaxPool, 8 x Conv 7^3,
  UpSample, Conv 5^3, Conv 5^3 tanh; 20 channels, 'same' padding), output on
  the input grid.

Both make their output exactly centrosymmetric ((y + flip(y)) / 2) when the
target is (atoms + inverses: the paper's P1 target): the input Patterson is
too, so nothing is lost and the read-out gets exact inverse pairs.  The
crystal network's target is one copy of the molecule (cctbx_p2a.crystal_data,
target.inverses=False), so its output is left free (``symmetric=False``).

A model file is ``<name>.pt`` (state dict + config) beside ``<name>.json`` (the
model card: architecture, grids, training data, domain, metrics, hardware,
time, versions and the sha256 of the .pt).
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn
from libtbx.utils import Sorry

from cctbx_p2a import model_files
from cctbx_p2a.model_files import MODELS_DIR, resolve_model_path, sha256_of  # noqa: F401


def symmetrise(y):
  return 0.5 * (y + torch.flip(y, dims=(-3, -2, -1)))


def conv_block(c_in, c_out):
  groups = 4 if c_out % 4 == 0 else 1
  return nn.Sequential(
    nn.Conv3d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
    nn.Conv3d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())


class UNet3D(nn.Module):
  """Patterson window (n_in^3) -> atom map on the central n_out^3 voxels.

  With upsample=2 the map comes out on voxels half the input's (n_out counts
  those): one more transposed convolution and a 3^3 convolution after the
  head, so that bonded atoms 1.2-1.5 A apart are separate peaks."""

  def __init__(self, n_in=32, n_out=24, channels=8, symmetric=True, upsample=1):
    super().__init__()
    self.symmetric, self.upsample = symmetric, upsample
    if upsample not in (1, 2) or n_out % upsample:
      raise Sorry("unet upsamples its output by 1 or 2 (got %r, n_out=%d)." % (upsample, n_out))
    n_out //= upsample
    if n_in % 8 or (n_in - n_out) % 4 or n_out > n_in or n_out % 2:
      raise Sorry("unet needs n_in divisible by 8 and (n_in - n_out) divisible by 4 "
                  "(got n_in=%d, n_out=%d)." % (n_in, n_out))
    c = channels
    self.n_in, self.n_out, self.crop = n_in, n_out, (n_in - n_out) // 2
    self.stem = nn.Sequential(nn.Conv3d(1, c, 3, padding=1), nn.SiLU())
    self.down1 = nn.Sequential(nn.Conv3d(c, 2 * c, 2, stride=2), conv_block(2 * c, 2 * c))
    self.down2 = nn.Sequential(nn.Conv3d(2 * c, 4 * c, 2, stride=2), conv_block(4 * c, 4 * c))
    self.down3 = nn.Sequential(nn.Conv3d(4 * c, 8 * c, 2, stride=2), conv_block(8 * c, 8 * c))
    self.up2 = nn.ConvTranspose3d(8 * c, 4 * c, 2, stride=2)
    self.dec2 = conv_block(8 * c, 4 * c)
    self.up1 = nn.ConvTranspose3d(4 * c, 2 * c, 2, stride=2)
    self.dec1 = conv_block(4 * c, 2 * c)
    self.up0 = nn.ConvTranspose3d(2 * c, c, 2, stride=2)
    if upsample == 1:
      self.head = nn.Sequential(nn.Conv3d(2 * c, c, 3, padding=1), nn.SiLU(), nn.Conv3d(c, 1, 1))
    else:
      self.head = nn.Sequential(nn.Conv3d(2 * c, c, 3, padding=1), nn.SiLU())
      self.up_out = nn.ConvTranspose3d(c, c, 2, stride=2)
      self.out = nn.Sequential(nn.Conv3d(c, c, 3, padding=1), nn.SiLU(), nn.Conv3d(c, 1, 1))

  def forward(self, x):
    e0 = self.stem(x)
    e1 = self.down1(e0)
    e2 = self.down2(e1)
    e3 = self.down3(e2)
    y = self.dec2(torch.cat([self.up2(e3), e2], 1))
    y = self.dec1(torch.cat([self.up1(y), e1], 1))
    k, h = self.crop, self.crop // 2
    if h:
      y = y[:, :, h:-h, h:-h, h:-h]
      e0 = e0[:, :, k:-k, k:-k, k:-k]
    y = self.head(torch.cat([self.up0(y), e0], 1))
    if self.upsample == 2:
      y = self.out(self.up_out(y))
    return symmetrise(y) if self.symmetric else y


class Hurwitz2020(nn.Module):
  """The paper's network (about 1.2 M parameters at 20 channels)."""

  def __init__(self, n_in=40, n_out=40, channels=20, symmetric=True, upsample=1):
    super().__init__()
    self.symmetric = symmetric
    if upsample != 1:
      raise Sorry("hurwitz2020 outputs on its input grid: leave target.voxel unset.")
    if n_out != n_in or n_in % 2:
      raise Sorry("hurwitz2020 outputs on its (even) input grid: set "
                  "target.output_box_edge = patterson.box_edge.")
    c = channels
    layers = [nn.Conv3d(1, c, 5, padding=2), nn.ReLU(), nn.Conv3d(c, c, 5, padding=2), nn.ReLU(),
              nn.MaxPool3d(2)]
    for _ in range(8):
      layers += [nn.Conv3d(c, c, 7, padding=3), nn.ReLU()]
    layers += [nn.Upsample(scale_factor=2), nn.Conv3d(c, c, 5, padding=2), nn.ReLU(),
               nn.Conv3d(c, 1, 5, padding=2), nn.Tanh()]
    self.net = nn.Sequential(*layers)
    self.n_in, self.n_out = n_in, n_out

  def forward(self, x):
    y = self.net(x)
    return symmetrise(y) if self.symmetric else y


ARCHITECTURES = {"unet": UNet3D, "hurwitz2020": Hurwitz2020}


def build(architecture, n_in, n_out, channels, symmetric=True, upsample=1):
  if architecture not in ARCHITECTURES:
    raise Sorry("Unknown architecture %r; choose one of %s." % (architecture, ", ".join(ARCHITECTURES)))
  return ARCHITECTURES[architecture](n_in=n_in, n_out=n_out, channels=channels, symmetric=symmetric,
                                     upsample=upsample)


def build_from_card(architecture, grid):
  """The network a card describes (cards before the crystal network have
  neither symmetric_output nor upsample: symmetric, not upsampled)."""
  return build(architecture["name"], grid["input_n"], grid["output_n"], architecture["channels"],
               symmetric=architecture.get("symmetric_output", True),
               upsample=architecture.get("upsample", 1))


def count_parameters(model):
  return sum(p.numel() for p in model.parameters())


class Model(model_files.ModelInfo):
  """A trained torch network with its card: what it was trained on and how
  well it does.  ``predict(grid)`` maps one normalised Patterson window to an
  atom map."""

  def __init__(self, net, card, path=None):
    super().__init__(card, path)
    self.net = net.eval()

  def predict(self, grid):
    """Atom map (numpy, n_out^3) for one input grid (numpy, n_in^3)."""
    import numpy as np
    with torch.no_grad():
      x = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]
      return self.net(x)[0, 0].numpy()


def save(net, path_stem, card):
  """Write <stem>.pt and <stem>.json (the card, with the sha256 of the .pt)."""
  pt = path_stem + ".pt"
  torch.save({"state_dict": net.state_dict(), "architecture": card["architecture"],
              "grid": card["grid"]}, pt)
  card = dict(card)
  card["weights_file"] = os.path.basename(pt)
  card["sha256"] = sha256_of(pt)
  card["size_bytes"] = os.path.getsize(pt)
  if card["architecture"]["name"] == "unet":  # for phasing without torch (cctbx_p2a.inference)
    import numpy as np
    npz = path_stem + ".npz"
    np.savez(npz, **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
    card["numpy_weights"] = {"file": os.path.basename(npz), "sha256": sha256_of(npz)}
  with open(path_stem + ".json", "w") as f:
    json.dump(card, f, indent=2, sort_keys=False)
  return card


def load(name_or_path=None, check_sha256=True):
  """Load a model and its card; refuses weights whose sha256 differs from the card's."""
  stem = resolve_model_path(name_or_path)
  card = model_files.read_card(stem)
  if check_sha256:
    model_files.check_weights(stem + ".pt", card.get("sha256"))
  blob = torch.load(stem + ".pt", map_location="cpu", weights_only=True)
  net = build_from_card(blob["architecture"], blob["grid"])
  net.load_state_dict(blob["state_dict"])
  return Model(net, card, path=stem + ".pt")


def install(path_stem, name, models_dir=MODELS_DIR):
  """Copy a trained model (<stem>.pt + card) into the package's models folder
  under `name`, so that solve.model=<name> finds it.  The card keeps its
  training record; its name and file entries are updated and the sha256
  checked."""
  import shutil
  source = resolve_model_path(path_stem)
  card = model_files.read_card(source)
  model_files.check_weights(source + ".pt", card.get("sha256"))
  if card.get("numpy_weights"):
    model_files.check_weights(source + ".npz", card["numpy_weights"]["sha256"])
  target = os.path.join(models_dir, name)
  shutil.copyfile(source + ".pt", target + ".pt")
  card["name"] = name
  card["weights_file"] = name + ".pt"
  if card.get("numpy_weights"):
    shutil.copyfile(source + ".npz", target + ".npz")
    card["numpy_weights"]["file"] = name + ".npz"
  with open(target + ".json", "w") as f:
    json.dump(card, f, indent=2)
  return target

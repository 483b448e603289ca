"""The U-Net's forward pass in numpy: phasing without importing torch.

Importing torch takes longer than the whole phasing step of a small molecule
(seconds against about one), so ``p2a.solve`` runs the shipped ``unet`` from a
copy of its weights in ``<name>.npz`` with this module.  It mirrors
``network.UNet3D.forward`` layer by layer; ``tests/test_network.py`` checks the
two agree.  Training and every other architecture stay with torch.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cctbx_p2a import model_files


def conv3(x, w, b):
  """3x3x3 convolution with zero padding 1: x (C, n, n, n), w (O, C, 3, 3, 3)."""
  windows = sliding_window_view(np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1))), (3, 3, 3), axis=(1, 2, 3))
  return np.tensordot(w, windows, axes=([1, 2, 3, 4], [0, 4, 5, 6])) + b[:, None, None, None]


def conv1(x, w, b):
  return np.tensordot(w[:, :, 0, 0, 0], x, axes=(1, 0)) + b[:, None, None, None]


def down2(x, w, b):
  """2x2x2 convolution with stride 2."""
  c, n = x.shape[0], x.shape[1] // 2
  blocks = x.reshape(c, n, 2, n, 2, n, 2)
  return np.einsum("ocijk,cxiyjzk->oxyz", w, blocks, optimize=True) + b[:, None, None, None]


def up2(x, w, b):
  """2x2x2 transposed convolution with stride 2: w (C_in, C_out, 2, 2, 2)."""
  n = x.shape[1]
  y = np.einsum("cxyz,coijk->oxiyjzk", x, w, optimize=True)
  return y.reshape(w.shape[1], 2 * n, 2 * n, 2 * n) + b[:, None, None, None]


def group_norm(x, groups, gamma, beta, eps=1e-5):
  c = x.shape[0]
  g = x.reshape(groups, -1)
  g = (g - g.mean(axis=1, keepdims=True)) / np.sqrt(g.var(axis=1, keepdims=True) + eps)
  return g.reshape(x.shape) * gamma.reshape(c, 1, 1, 1) + beta.reshape(c, 1, 1, 1)


def silu(x):
  return x / (1.0 + np.exp(-x))


class NumpyUNet:
  """network.UNet3D's forward pass on one grid, from its state dict."""

  def __init__(self, weights, n_in, n_out, symmetric=True, upsample=1):
    self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    self.crop = (n_in - n_out // upsample) // 2
    self.symmetric, self.upsample = symmetric, upsample

  def _conv_block(self, x, name):
    for conv, norm in ((0, 1), (3, 4)):
      x = conv3(x, self.w["%s.%d.weight" % (name, conv)], self.w["%s.%d.bias" % (name, conv)])
      gamma = self.w["%s.%d.weight" % (name, norm)]
      groups = 4 if gamma.size % 4 == 0 else 1
      x = silu(group_norm(x, groups, gamma, self.w["%s.%d.bias" % (name, norm)]))
    return x

  def _down(self, x, name):
    x = down2(x, self.w[name + ".0.weight"], self.w[name + ".0.bias"])
    return self._conv_block(x, name + ".1")

  def __call__(self, grid):
    w = self.w
    e0 = silu(conv3(grid[None].astype(np.float32), w["stem.0.weight"], w["stem.0.bias"]))
    e1 = self._down(e0, "down1")
    e2 = self._down(e1, "down2")
    e3 = self._down(e2, "down3")
    y = self._conv_block(np.concatenate([up2(e3, w["up2.weight"], w["up2.bias"]), e2]), "dec2")
    y = self._conv_block(np.concatenate([up2(y, w["up1.weight"], w["up1.bias"]), e1]), "dec1")
    k, h = self.crop, self.crop // 2
    if h:
      y = y[:, h:-h, h:-h, h:-h]
      e0 = e0[:, k:-k, k:-k, k:-k]
    y = np.concatenate([up2(y, w["up0.weight"], w["up0.bias"]), e0])
    y = silu(conv3(y, w["head.0.weight"], w["head.0.bias"]))
    if self.upsample == 2:
      y = up2(y, w["up_out.weight"], w["up_out.bias"])
      y = silu(conv3(y, w["out.0.weight"], w["out.0.bias"]))
      y = conv1(y, w["out.2.weight"], w["out.2.bias"])[0]
    else:
      y = conv1(y, w["head.2.weight"], w["head.2.bias"])[0]
    if self.symmetric:
      y = 0.5 * (y + y[::-1, ::-1, ::-1])
    return y.astype(np.float32)


class NumpyModel(model_files.ModelInfo):
  """A shipped unet model run by NumpyUNet (same interface as network.Model)."""

  def __init__(self, weights, card, path=None):
    super().__init__(card, path)
    self.forward = NumpyUNet(weights, card["grid"]["input_n"], card["grid"]["output_n"],
                             symmetric=card["architecture"].get("symmetric_output", True),
                             upsample=card["architecture"].get("upsample", 1))

  def predict(self, grid):
    return self.forward(np.ascontiguousarray(grid, dtype=np.float32))

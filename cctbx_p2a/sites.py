"""Sites stage: atom map -> peaks -> one hand -> refined sites.

The network draws the molecule and its inverse about the centroid.  Peaks
are read with sub-voxel precision; because the map is centrosymmetric they come
in inverse pairs (+p, -p), and choosing the hand means choosing one member of
each pair.
"""
from __future__ import annotations

import numpy as np


def find_peaks(atom_map, voxel, threshold=0.1, max_peaks=None):
  """Local maxima (26-neighbourhood) above `threshold`, refined to sub-voxel
  precision by a Gaussian (log-parabola) fit along each axis.

  Returns (sites_cart (m,3), heights (m,)) sorted by height, strongest first.
  Coordinates are Cartesian A relative to the grid centre, the convention of
  patterson.grid_coordinates.
  """
  a = np.asarray(atom_map, dtype=float)
  n = np.array(a.shape)
  padded = np.pad(a, 1, mode="constant", constant_values=-np.inf)
  is_max = a > threshold
  core = tuple(slice(1, s + 1) for s in a.shape)
  for dx in (-1, 0, 1):
    for dy in (-1, 0, 1):
      for dz in (-1, 0, 1):
        if dx == dy == dz == 0:
          continue
        shifted = padded[1 + dx:1 + dx + n[0], 1 + dy:1 + dy + n[1], 1 + dz:1 + dz + n[2]]
        # ties: keep only the first voxel in C order so a flat top gives one peak
        if (dx, dy, dz) < (0, 0, 0):
          is_max &= a > shifted
        else:
          is_max &= a >= shifted
  idx = np.argwhere(is_max)
  heights = a[is_max]
  order = np.argsort(-heights)
  idx, heights = idx[order], heights[order]
  if max_peaks is not None:
    idx, heights = idx[:max_peaks], heights[:max_peaks]
  offsets = np.zeros(idx.shape, dtype=float)
  for axis in range(3):
    unit = np.zeros(3, dtype=int)
    unit[axis] = 1
    lo = idx - unit
    hi = idx + unit
    ok = (lo[:, axis] >= 0) & (hi[:, axis] < n[axis])
    v0 = heights
    vm = np.where(ok, a[tuple(np.clip(lo, 0, n - 1).T)], v0)
    vp = np.where(ok, a[tuple(np.clip(hi, 0, n - 1).T)], v0)
    positive = ok & (vm > 0) & (vp > 0) & (v0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
      lm, l0, lp = np.log(np.where(positive, vm, 1)), np.log(np.where(positive, v0, 1)), \
        np.log(np.where(positive, vp, 1))
      curv_log = lm - 2 * l0 + lp
      off_log = 0.5 * (lm - lp) / curv_log
      curv = vm - 2 * v0 + vp
      off_lin = 0.5 * (vm - vp) / curv
    off = np.where(positive & (curv_log < 0), off_log, np.where(ok & (curv < 0), off_lin, 0.0))
    offsets[:, axis] = np.clip(np.nan_to_num(off), -0.5, 0.5)
  centre = (n - 1) / 2.0
  sites = (idx + offsets - centre) * voxel
  return sites, heights

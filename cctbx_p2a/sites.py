"""Read-out stage: atom map -> peaks -> inverse pairs -> hand -> start sites.

The network draws the molecule and its inverse about the centroid.  Peaks
are read with sub-voxel precision; because the map is centrosymmetric they come
in inverse pairs (+p, -p), and choosing the hand means choosing one member of
each pair.  Refinement and everything after it is cctbx_p2a.finishing.
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


# --- inverse pairs -----------------------------------------------------------

def atom_map_mass(atom_map, floor=0.02):
  """Integrated density of the atom map above a small floor.  Where atoms
  blur into one another and peaks merge, the mass still grows with the atom
  count; the model card's metrics give the mass per atom measured on fresh
  synthetic cases (evaluation.evaluate_network)."""
  return float(atom_map[atom_map > floor].sum())


def inverse_pairs(peaks, heights, tolerance=0.6, centre_radius=0.5):
  """Group centrosymmetric peaks into inverse pairs.

  Returns (pairs, centre): `pairs` a list of (site, height) with one member of
  each (+p, -p) pair, `centre` the sites within centre_radius of the centroid
  (an atom there is its own inverse and belongs to both hands).
  """
  peaks = np.asarray(peaks, dtype=float)
  used = np.zeros(len(peaks), dtype=bool)
  pairs, centre = [], []
  for i in range(len(peaks)):
    if used[i]:
      continue
    used[i] = True
    if np.linalg.norm(peaks[i]) < centre_radius:
      centre.append((peaks[i] * 0, heights[i]))
      continue
    d = np.linalg.norm(peaks + peaks[i], axis=1)
    d[used] = np.inf
    j = int(np.argmin(d)) if len(d) else -1
    if j >= 0 and d[j] < tolerance:
      used[j] = True
      site = 0.5 * (peaks[i] - peaks[j])  # average of +p and -(-p)
      pairs.append((site, 0.5 * (heights[i] + heights[j])))
    else:
      pairs.append((peaks[i], heights[i]))  # partner lost (e.g. at the edge)
  return pairs, centre


# --- choosing the hand ---------------------------------------------------------

def scattering_factors(f_obs, element="C", u_iso=0.02):
  """f0(s) * exp(-B s^2/4) of one element at every reflection of f_obs."""
  from cctbx.eltbx import xray_scattering
  from cctbx import adptbx
  gaussian = xray_scattering.wk1995(element, True).fetch()
  stol_sq = f_obs.sin_theta_over_lambda_sq().data().as_numpy_array()
  f0 = gaussian.c() + sum(a * np.exp(-b * stol_sq)
                         for a, b in zip(gaussian.array_of_a(), gaussian.array_of_b()))
  b = adptbx.u_as_b(u_iso)
  return f0 * np.exp(-b * stol_sq)


def correlation(a, b):
  a = a - a.mean(axis=-1, keepdims=True)
  b = b - b.mean()
  return (a @ b) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum() + 1e-30)


def choose_hand(pairs, centre, f_obs, element="C", u_iso=0.02, max_reflections=4000,
                exhaustive_limit=16, seed=0):
  """The best hand choice: (sites_cart, score, n_scored).  See hand_candidates."""
  candidates, n_scored = hand_candidates(pairs, centre, f_obs, element, u_iso, max_reflections,
                                         exhaustive_limit, seed, n_best=1)
  sites_cart, score = candidates[0]
  return sites_cart, score, n_scored


def hand_candidates(pairs, centre, f_obs, element="C", u_iso=0.02, max_reflections=4000,
                    exhaustive_limit=16, seed=0, n_best=3):
  """Pick one member of each inverse pair so that |F_calc| best matches |F_obs|.

  A global inversion leaves |F| unchanged, so the first pair is fixed and the
  other 2^(P-1) choices are scored by the correlation of |F_calc| with |F_obs|.
  Up to `exhaustive_limit` pairs every choice is scored (vectorised: one
  complex matrix product per block of choices); beyond that, greedy single
  flips from several random starts.  Returns ([(sites_cart, score), ...] for
  the n_best choices, best first; n_scored).
  """
  f_obs = f_obs.select(f_obs.data() > 0)
  if f_obs.size() > max_reflections:
    # the strongest reflections carry most of the hand information
    order = np.argsort(-f_obs.data().as_numpy_array())[:max_reflections]
    from cctbx.array_family import flex
    f_obs = f_obs.select(flex.size_t(sorted(order.tolist())))
  hkl = np.array(f_obs.indices(), dtype=float)
  orth = np.array(f_obs.unit_cell().fractionalization_matrix()).reshape(3, 3)
  fobs = f_obs.data().as_numpy_array()
  ff = scattering_factors(f_obs, element, u_iso)

  def terms(sites_cart):
    frac = np.asarray(sites_cart).reshape(-1, 3) @ orth.T
    return np.exp(2j * np.pi * frac @ hkl.T) * ff  # (n, M)

  centre_sites = np.array([s for s, _ in centre]).reshape(-1, 3)
  p = np.array([s for s, _ in pairs]).reshape(-1, 3)
  base = terms(centre_sites).sum(axis=0) if len(centre_sites) else np.zeros(len(fobs), complex)
  if len(p) == 0:
    return [(centre_sites, 0.0)], 0
  plus, minus = terms(p), terms(-p)
  base = base + minus.sum(axis=0)
  delta = plus - minus  # choosing +p_k adds delta[k]
  n_pairs = len(p)
  found = {}  # bits (tuple) -> score
  n_scored = 0
  if n_pairs - 1 <= exhaustive_limit:
    n_free = n_pairs - 1
    block = 1 << min(n_free, 12)
    for start in range(0, 1 << n_free, block):
      codes = np.arange(start, min(start + block, 1 << n_free))
      bits = ((codes[:, None] >> np.arange(n_free)) & 1).astype(float)
      bits = np.concatenate([np.ones((len(codes), 1)), bits], axis=1)  # pair 0 fixed to +
      scores = correlation(np.abs(base + bits @ delta), fobs)
      n_scored += len(codes)
      for k in np.argsort(-scores)[:n_best]:
        found[tuple(bits[k])] = float(scores[k])
  else:
    rng = np.random.default_rng(seed)
    for _ in range(32):
      bits = rng.integers(0, 2, n_pairs).astype(float)
      bits[0] = 1
      score = correlation(np.abs(base + bits @ delta), fobs)
      improved = True
      while improved:
        improved = False
        for k in range(1, n_pairs):
          bits[k] = 1 - bits[k]
          s = correlation(np.abs(base + bits @ delta), fobs)
          n_scored += 1
          if s > score + 1e-12:
            score, improved = s, True
          else:
            bits[k] = 1 - bits[k]
      found[tuple(bits)] = float(score)
  ranked = sorted(found.items(), key=lambda kv: -kv[1])[:n_best]
  candidates = []
  for bits, score in ranked:
    chosen = np.where(np.array(bits)[:, None] > 0.5, p, -p)
    candidates.append((np.concatenate([chosen, centre_sites]), score))
  return candidates, n_scored


# --- the start structure ----------------------------------------------------------

def structure_from_sites(sites_cart, crystal_symmetry, elements, u_iso=0.02,
                         centroid_frac=(0.5, 0.5, 0.5)):
  """P1 xray.structure with the molecule's centroid at centroid_frac."""
  from cctbx import xray, crystal
  from cctbx.array_family import flex
  uc = crystal_symmetry.unit_cell()
  centre = np.array(uc.orthogonalize(tuple(centroid_frac)))
  cs = crystal.symmetry(unit_cell=uc, space_group_symbol="P 1")
  scatterers = flex.xray_scatterer()
  for i, (site, element) in enumerate(zip(sites_cart, elements)):
    scatterers.append(xray.scatterer(label="%s%d" % (element, i + 1),
                                     site=uc.fractionalize(tuple(np.asarray(site) + centre)),
                                     u=u_iso, scattering_type=element))
  return xray.structure(crystal_symmetry=cs, scatterers=scatterers)



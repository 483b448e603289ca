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


# --- building and refining the structure ----------------------------------------

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


def best_scale(fo, fc):
  """The k minimising sum (|Fo| - k|Fc|)^2 (numpy arrays)."""
  return float((fo * fc).sum() / max((fc * fc).sum(), 1e-30))


def r1_and_cc(f_obs, xray_structure):
  """R1 = sum||Fo| - k|Fc|| / sum|Fo| and CC(|Fo|, |Fc|), with the best scale k."""
  f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  fc = abs(f_calc)
  fo, fcd = f_obs.data().as_numpy_array(), fc.data().as_numpy_array()
  k = best_scale(fo, fcd)
  r1 = float(np.abs(fo - k * fcd).sum() / max(fo.sum(), 1e-30))
  cc = float(np.corrcoef(fo, fcd)[0, 1]) if fo.size > 1 else 0.0
  return r1, cc, f_calc


def refine(xray_structure, f_obs, cycles=2, max_iterations=25, refine_u_iso=True,
           max_reflections=6000):
  """L-BFGS least squares on |F_obs| (cctbx.xray.minimization): sites, then
  sites and isotropic U.  The overall scale is solved analytically by the
  target at every step.  The structure is refined in place.

  A few atoms need few reflections: above max_reflections a fixed random
  subset (spread over all resolutions) is used, which keeps a 10-atom
  refinement well under a second; R1 and CC are always computed on all data."""
  from cctbx import xray
  from cctbx.array_family import flex
  import scitbx.lbfgs
  if max_reflections and f_obs.size() > max_reflections:
    keep = np.random.default_rng(0).permutation(f_obs.size())[:max_reflections]
    f_obs = f_obs.select(flex.size_t(sorted(keep.tolist())))
  target = xray.target_functors.unified_least_squares_residual(f_obs)
  termination = scitbx.lbfgs.termination_parameters(max_iterations=max_iterations)
  for cycle in range(cycles):
    if refine_u_iso and cycle > 0:
      fit_overall_u_iso(xray_structure, f_obs, target)
    scatterers = xray_structure.scatterers()
    scatterers.flags_set_grads(state=False)
    everything = flex.size_t_range(scatterers.size())
    scatterers.flags_set_grad_site(iselection=everything)
    if refine_u_iso and cycle > 0:
      scatterers.flags_set_grad_u_iso(iselection=everything)
    before = scatterers.deep_copy()
    try:
      xray.minimization.lbfgs(target_functor=target, xray_structure=xray_structure,
                              lbfgs_termination_params=termination,
                              structure_factor_algorithm="direct")
    except RuntimeError as e:  # a U_iso stepping far below zero (a wrong element or atom)
      if "arg_limit" not in str(e):
        raise
      xray_structure.replace_scatterers(before)
      if cycle > 0:  # sites only, keeping the overall U
        scatterers = xray_structure.scatterers()
        scatterers.flags_set_grads(state=False)
        scatterers.flags_set_grad_site(iselection=everything)
        xray.minimization.lbfgs(target_functor=target, xray_structure=xray_structure,
                                lbfgs_termination_params=termination,
                                structure_factor_algorithm="direct")
    for sc in xray_structure.scatterers():
      sc.u_iso = min(max(sc.u_iso, U_ISO_RANGE[0]), U_ISO_RANGE[1])
  return xray_structure


U_ISO_RANGE = (0.001, 0.5)


def fit_overall_u_iso(xray_structure, f_obs, target, lo=0.002, hi=0.15, steps=12):
  """Give every atom the one U_iso that fits the data best (golden-section
  search of the least-squares target).  Atoms start at U = 0.02 whatever
  the thermal motion, and free per-atom U from so far off (or on a wrong
  element) can step below zero, which the minimiser cannot recover from."""
  scatterers = xray_structure.scatterers()

  def residual(u):
    for sc in scatterers:
      sc.u_iso = u
    xray_structure.replace_scatterers(scatterers)
    f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
    return target(f_calc, False).target()

  g = (np.sqrt(5) - 1) / 2
  a, b = lo, hi
  c, d = b - g * (b - a), a + g * (b - a)
  fc, fd = residual(c), residual(d)
  for _ in range(steps):
    if fc < fd:
      b, d, fd = d, c, fc
      c = b - g * (b - a)
      fc = residual(c)
    else:
      a, c, fc = c, d, fd
      d = a + g * (b - a)
      fd = residual(d)
  residual(0.5 * (a + b))
  return 0.5 * (a + b)


def complete(xray_structure, f_obs, n_wanted, element="C", min_distance=1.2):
  """Add the strongest peaks of the F_obs map phased by the current model,
  away from existing atoms, until n_wanted atoms are present."""
  from cctbx import maptbx, xray
  n_missing = n_wanted - xray_structure.scatterers().size()
  if n_missing <= 0:
    return xray_structure, 0
  f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  coeffs = f_obs.phase_transfer(f_calc)
  fft_map = coeffs.fft_map(resolution_factor=0.25,
                           symmetry_flags=maptbx.use_space_group_symmetry).apply_sigma_scaling()
  search = fft_map.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=1.0,
    max_clusters=4 * n_wanted + 20)).all(max_clusters=4 * n_wanted + 20)
  uc = xray_structure.unit_cell()
  existing = [sc.site for sc in xray_structure.scatterers()]
  added = 0
  for site_frac in search.sites():
    if added == n_missing:
      break
    if all(uc.mod_short_distance(site_frac, e) >= min_distance for e in existing):
      existing.append(site_frac)
      added += 1
      xray_structure.add_scatterer(xray.scatterer(
        label="%s%d" % (element, xray_structure.scatterers().size() + 1),
        site=site_frac, u=0.02, scattering_type=element))
  return xray_structure, added


def adjust_atom_count(xray_structure, f_obs, element="C", add_ratio=0.3, drop_ratio=0.3,
                      min_distance=1.2, max_atoms=None, u_wrong=0.45):
  """One round of difference-Fourier bookkeeping when the atom count is not
  known: atoms where the F_obs - k|F_calc| map (model phases) is deeply
  negative, or whose U_iso ran to u_wrong, are dropped, and its positive
  peaks away from every atom are added.

  Heights are compared with the model's own density at its atoms (median of
  the k*F_calc map there), so the rule holds for any scale, resolution and
  U_iso.  Returns (new structure, n_added, n_dropped)."""
  from cctbx import maptbx, xray
  from cctbx.array_family import flex
  f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  fc = abs(f_calc).data()
  k = best_scale(f_obs.data().as_numpy_array(), fc.as_numpy_array())
  gridding = f_obs.crystal_gridding(resolution_factor=0.25, symmetry_flags=maptbx.use_space_group_symmetry)
  model_map = (f_calc * k).fft_map(crystal_gridding=gridding).real_map_unpadded()
  diff_coeffs = f_obs.customized_copy(data=f_obs.data() - k * fc, sigmas=None).phase_transfer(f_calc)
  diff_fft = diff_coeffs.fft_map(crystal_gridding=gridding)
  diff_map = diff_fft.real_map_unpadded()
  scatterers = xray_structure.scatterers()
  model_heights = np.array([model_map.eight_point_interpolation(sc.site) for sc in scatterers])
  diff_at_atoms = np.array([diff_map.eight_point_interpolation(sc.site) for sc in scatterers])
  reference = float(np.median(model_heights)) if len(model_heights) else 0.0
  if reference <= 0:
    return xray_structure, 0, 0
  u_iso = np.array([sc.u_iso for sc in scatterers])
  keep = (diff_at_atoms > -drop_ratio * model_heights) & (u_iso < u_wrong)
  if keep.sum() < 1:
    keep[np.argmax(diff_at_atoms)] = True
  result = xray_structure.select(flex.bool(keep.tolist()))
  n_dropped = int((~keep).sum())
  uc = result.unit_cell()
  room = None if max_atoms is None else max(max_atoms - result.scatterers().size(), 0)
  peaks = diff_fft.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=1.0, max_clusters=50),
    verify_symmetry=False).all(max_clusters=50)
  n_added = 0
  for site, height in zip(peaks.sites(), peaks.heights()):
    if height < add_ratio * reference:
      break
    if any(uc.mod_short_distance(site, sc.site) < min_distance for sc in result.scatterers()):
      continue
    if room is not None and n_added >= room:
      if n_dropped or n_added or result.scatterers().size() < 2:
        break
      # the count is known and full: a strong peak away from every atom means
      # one atom is wrong; the one that smeared itself out most makes room
      worst = int(np.argmax([sc.u_iso for sc in result.scatterers()]))
      result = result.select(flex.bool([i != worst for i in range(result.scatterers().size())]))
      n_dropped, room = 1, 1
    n_added += 1
    result.add_scatterer(xray.scatterer(label="%s%d" % (element, result.scatterers().size() + 1),
                                        site=site, u=0.02, scattering_type=element))
  return relabel(result), n_added, n_dropped


def relabel(xray_structure):
  """Labels element + running number (C1, N2, S3, ...): unique, as SHELX and
  CIF writers need after atoms were added and dropped."""
  for i, sc in enumerate(xray_structure.scatterers()):
    sc.label = "%s%d" % (sc.scattering_type, i + 1)
  return xray_structure


def peaks_as_structure(map_coeffs, n_sites, element="C", u_iso=0.02, min_distance=1.0,
                       resolution_factor=0.25, crystal_symmetry=None):
  """The n_sites highest peaks of the map of `map_coeffs` as an xray.structure
  (peaks closer than min_distance, symmetry mates included, are merged), in
  crystal_symmetry (default: the map coefficients')."""
  from cctbx import maptbx, xray
  from cctbx.array_family import flex
  fft_map = map_coeffs.fft_map(resolution_factor=resolution_factor,
                               symmetry_flags=maptbx.use_space_group_symmetry)
  fft_map.apply_sigma_scaling()
  peaks = fft_map.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=min_distance,
    max_clusters=n_sites)).all(max_clusters=n_sites)
  scatterers = flex.xray_scatterer()
  for i, site in enumerate(peaks.sites()):
    scatterers.append(xray.scatterer(label="%s%d" % (element, i + 1), site=site, u=u_iso,
                                     scattering_type=element))
  return xray.structure(crystal_symmetry=crystal_symmetry or map_coeffs.crystal_symmetry(),
                        scatterers=scatterers)


def recycle(xray_structure, f_obs, n_sites, element="C", max_cycles=12, patience=3,
            max_reflections=6000):
  """Dual-space recycling of a partly right model: phase F_obs with the model,
  take the n_sites highest peaks of the 2mFo-DFc-like map (2|Fo| - k|Fc|), refine
  the sites briefly, keep the best model by R1.  A model with most atoms right
  converges in a few cycles; a wrong one does not, and R1 says so."""
  best = xray_structure.deep_copy_scatterers()
  best_r1 = r1_and_cc(f_obs, best)[0]
  current, stall, cycles = best, 0, 0
  for cycles in range(1, max_cycles + 1):
    f_calc = f_obs.structure_factors_from_scatterers(current, algorithm="fft").f_calc()
    fc = abs(f_calc).data()
    k = best_scale(f_obs.data().as_numpy_array(), fc.as_numpy_array())
    coeffs = f_obs.customized_copy(data=2 * f_obs.data() - k * fc, sigmas=None).phase_transfer(f_calc)
    current = peaks_as_structure(coeffs, n_sites, element=element)
    refine(current, f_obs, cycles=1, max_iterations=10, refine_u_iso=False,
           max_reflections=max_reflections)
    r1 = r1_and_cc(f_obs, current)[0]
    if r1 < best_r1 - 1e-3:
      best, best_r1, stall = current.deep_copy_scatterers(), r1, 0
    else:
      stall += 1
      if stall >= patience:
        break
  return best, cycles


def random_start_recycling(f_obs, n_sites, element="C", seed=0, n_starts=5, max_cycles=12,
                           max_reflections=6000):
  """The same refinement and recycling as p2a.solve, started from random
  sites instead of the network's: the control that shows what the network
  adds.  Keeps the best of n_starts by R1."""
  from cctbx import xray, crystal
  from cctbx.array_family import flex
  rng = np.random.default_rng(seed)
  cs = crystal.symmetry(unit_cell=f_obs.unit_cell(), space_group_symbol="P 1")
  best, best_r1 = None, np.inf
  for _ in range(n_starts):
    scatterers = flex.xray_scatterer()
    for i in range(n_sites):
      scatterers.append(xray.scatterer(label="%s%d" % (element, i + 1), site=tuple(rng.uniform(0, 1, 3)),
                                       u=0.02, scattering_type=element))
    xs = xray.structure(crystal_symmetry=cs, scatterers=scatterers)
    xs, _ = recycle(xs, f_obs, n_sites, element=element, max_cycles=max_cycles,
                    max_reflections=max_reflections)
    refine(xs, f_obs, max_reflections=max_reflections)
    r1 = r1_and_cc(f_obs, xs)[0]
    if r1 < best_r1:
      best, best_r1 = xs, r1
  return best

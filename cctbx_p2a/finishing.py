"""Finishing stage: sites from any start -> a structure that explains the data.

Every method ends here alike -- the network's read-out, charge flipping, the
tangent formula, random starts -- so a comparison measures the starts, not
the finishing.  Everything works in the data's own space group: structure
factors, L-BFGS refinement (atoms on special positions are kept there by
cctbx.xray.minimization), maps and peak searches use the space group's
symmetry, and "away from every atom" means away from every symmetry copy.

    finish(xs, f_obs, params, n_sites, composition)   the whole sequence
      refine -> complete -> recycle (dual space) while R1 is poor
      -> elements (composition, or heavy atoms from the data)
      -> difference-map bookkeeping of the atom count

Returns a Finished (structure, R1, CC, F_calc, what was done).
"""
from __future__ import annotations

import contextvars
import functools
from dataclasses import dataclass, field

import numpy as np


# --- agreement with the data ---------------------------------------------------

def best_scale(fo, fc):
  """The k minimising sum (|Fo| - k|Fc|)^2 (numpy arrays)."""
  return float((fo * fc).sum() / max((fc * fc).sum(), 1e-30))


def model_phased_coefficients(f_obs, f_calc, fo_weight=1):
  """Map coefficients fo_weight*|F_obs| - k|F_calc| with the model's phases,
  k the best scale: the difference map (1) or the 2|Fo| - k|Fc| map (2).
  Returns (coefficients, k)."""
  fc = abs(f_calc).data()
  k = best_scale(f_obs.data().as_numpy_array(), fc.as_numpy_array())
  data = fo_weight * f_obs.data() - k * fc
  return f_obs.customized_copy(data=data, sigmas=None).phase_transfer(f_calc), k


def r1_and_cc(f_obs, xray_structure):
  """R1 = sum||Fo| - k|Fc|| / sum|Fo| and CC(|Fo|, |Fc|), with the best scale k."""
  f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  fc = abs(f_calc)
  fo, fcd = f_obs.data().as_numpy_array(), fc.data().as_numpy_array()
  k = best_scale(fo, fcd)
  r1 = float(np.abs(fo - k * fcd).sum() / max(fo.sum(), 1e-30))
  cc = float(np.corrcoef(fo, fcd)[0, 1]) if fo.size > 1 else 0.0
  return r1, cc, f_calc


def explains_data(r1, cc, params):
  """The `success` PHIL scope's verdict on R1 and CC."""
  return r1 <= params.success.r1_max and cc >= params.success.cc_min


def reaches(f_obs, d_min_limit):
  """Whether the data reach d_min_limit (A; None: a rule that is off).  Data
  cut at 2.0 A have d_min 2.0001: a 0.01 A margin keeps them in."""
  return d_min_limit is not None and f_obs.d_min() <= d_min_limit + 0.01


def enough_data(f_obs, n_atoms, params, n_parameters=None):
  """Whether there are success.min_data_per_parameter unique reflections per
  refined parameter (x, y, z, U_iso per atom, unless n_parameters says
  otherwise): below it R1 cannot tell a right structure from a wrong one
  refined into the data."""
  return f_obs.size() >= params.success.min_data_per_parameter * (n_parameters or 4 * n_atoms)


def refined_parameters(xray_structure):
  """The parameters a finished model holds: x, y, z per atom, and one U_iso
  per atom, or one for them all where every atom has the same U_iso (a
  known molecule refined with refinement.known_molecule_one_u_iso)."""
  n = xray_structure.scatterers().size()
  one_u = n > 1 and len({round(sc.u_iso, 8) for sc in xray_structure.scatterers()}) == 1
  return 3 * n + (1 if one_u else n)


def symmetry_pairs(xray_structure, cutoff):
  """Every pair of atoms within cutoff (A), symmetry copies and lattice
  translations included, as (i, j, op, distance): atom i and op applied to
  atom j, each pair once (cctbx's pair_sym_table, i <= j).  The one walk
  that the chemistry checks (nearest_neighbours, lone_carbons,
  impossible_contacts) and packing's contact count share."""
  from cctbx import crystal
  if xray_structure.scatterers().size() == 0:
    return []
  pairs = crystal.pair_asu_table(xray_structure.asu_mappings(buffer_thickness=cutoff))
  pairs.add_all_pairs(distance_cutoff=cutoff)
  uc, frac = xray_structure.unit_cell(), xray_structure.sites_frac()
  return [(i, j, op, uc.distance(frac[i], op * frac[j]))
          for i, row in enumerate(pairs.extract_pair_sym_table())
          for j, ops in row.items() for op in ops]


def nearest_neighbours(xray_structure, cutoff=3.5):
  """For each atom, (distance to its nearest neighbour, that neighbour's
  index), symmetry copies included; (inf, None) when none is within cutoff."""
  n = xray_structure.scatterers().size()
  nearest = [(np.inf, None)] * n
  if n < 2 and xray_structure.space_group().order_z() == 1:
    return nearest
  for i, j, _, d in symmetry_pairs(xray_structure, cutoff):
    if d < nearest[i][0]:
      nearest[i] = (d, j)
    if d < nearest[j][0]:
      nearest[j] = (d, i)
  return nearest


def claims_bonds(xray_structure, bond_max=2.4, fraction=0.25):
  """True when the structure is one of bonded chemistry (at least `fraction`
  of its atoms have a neighbour within bond_max A), not of the paper's
  isolated points (at least 3 A apart; a right solution's closest pair
  about 2.7 A or more), to which bond checks do not apply.  bond_max covers
  bonds to Br, I, S and metals (1.9-2.4 A): at 2.0 A a half-wrong Cu/Br
  complex (6 of 9 atoms right, 4 of 9 at a bond length) had its bonds at
  2.07-2.11 A, and escaped the chemistry check with bond_max 2.0."""
  near = [d for d, _ in nearest_neighbours(xray_structure, cutoff=bond_max)]
  return len(near) > 0 and np.mean([d <= bond_max for d in near]) >= fraction


def covalent_radius(element):
  """cctbx's covalent radius (A), 0.31 for hydrogen."""
  from cctbx.eltbx import covalent_radii
  return 0.31 if element in ("H", "D") else covalent_radii.table(element).radius()


def covalent_neighbours(xray_structure, above=0.20):
  """(scattering types, covalent radii, nearest_neighbours within reach of
  the longest bond: twice the largest radius + above A) -- what
  bonded_fraction and lone_carbons judge bonds by."""
  types = xray_structure.scatterers().extract_scattering_types()
  radii = [covalent_radius(t) for t in types]
  return types, radii, nearest_neighbours(xray_structure, cutoff=2 * max(radii) + above)


def bonded_fraction(xray_structure, below=0.35, above=0.20):
  """Chemistry as a check on a solution: the fraction of atoms whose nearest
  neighbour (symmetry copies included) lies at a bond length for the pair,
  the sum of covalent radii -below/+above A.  A right small-molecule
  structure scores near 1 (isolated waters and ions lower it); atoms placed
  by overfitting too few reflections sit 1.6-2.4 A apart and score near 0.5
  (measured on sucrose cut to 1.5 and 2.0 A)."""
  n = xray_structure.scatterers().size()
  if n < 2:
    return 1.0
  _, radii, nearest = covalent_neighbours(xray_structure, above)
  bonded = 0
  for i, (d, j) in enumerate(nearest):
    if j is not None:
      ideal = radii[i] + radii[j]
      bonded += ideal - below <= d <= ideal + above
  return bonded / n


def lone_carbons(xray_structure, above=0.20, max_fragment=2):
  """Indices of the carbon atoms of fragments of at most max_fragment atoms
  that hold carbon and nothing else but at most one halogen, bonds judged
  by covalent radii (sum + above A, symmetry copies included).  Carbon is
  always bonded to the rest of its molecule: a carbon with no neighbour at a
  bond length, a C-C pair with none, or a C-X pair (X = F, Cl, Br, I) with
  none, is one the data did not place (too-short contacts are
  impossible_contacts').  Found: a Cu(NCCH3)2(OH)Br complex at 1.03 A, 7 of
  9 atoms right, R1 0.049, one acetonitrile's two carbons refined as a C-C
  pair 2.8 A from everything else; ethane, ethylene and acetylene, the only
  molecules of two carbons, are gases.  And (suite=molecules, C5Cl and C6Cl
  rings at 1.12 and 1.30 A, R1 0.103-0.106, claimed with 5 of 6 and 6 of 7
  atoms right): the ring carbon bonded to Cl refined on the far side of the
  Cl, a C-Cl pair bonded to nothing else; CH3X is a gas (CH3I boils at 42
  C), while CH2Cl2 and CHCl3, common solvents in crystals, hold 2-3 halogens
  and are left alone."""
  n = xray_structure.scatterers().size()
  if n < 2:
    return []
  types = xray_structure.scatterers().extract_scattering_types()
  radii = [covalent_radius(t) for t in types]
  root = list(range(n))

  def find(i):
    while root[i] != i:
      root[i] = root[root[i]]
      i = root[i]
    return i
  for i, j, _, d in symmetry_pairs(xray_structure, 2 * max(radii) + above):
    if d <= radii[i] + radii[j] + above:
      root[find(i)] = find(j)
  fragments = {}
  for i in range(n):
    fragments.setdefault(find(i), []).append(i)
  halogens = ("F", "Cl", "Br", "I")
  return sorted(i for members in fragments.values()
                if len(members) <= max_fragment and all(types[k] in ("C",) + halogens for k in members)
                and sum(types[k] in halogens for k in members) <= 1
                for i in members if types[i] == "C")


# Elements whose contacts follow covalent radii closely: not metals
# (metal-ligand and semi-coordination bonds spread far more), nor Se, Br and
# I (secondary bonds: an I...I contact of 3.01 A between two molecules of a
# packed R-3 crystal, radii sum +0.23 A, is real).
COVALENT_MAIN_GROUP = ("H", "D", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl")


def impossible_contacts(xray_structure, below=0.40, above=0.20, gap=0.45):
  """Pairs of main-group atoms (COVALENT_MAIN_GROUP) too close for any bond
  (shorter than the sum of covalent radii -below: C-C under 1.12 A, where a
  C#C triple bond is 1.20), or too far apart for a bond and too close for
  anything else: longer than the sum +above, shorter than the sum +gap
  (C...C 1.74-1.99 A; the 1,3 distance across a C-C-C angle is 2.5 A,
  across a four-membered ring 2.1 A).  A right structure has none; a wrong light atom beside a heavy atom
  that dominates |F| often makes one while R1 stays low (measured:
  4-bromobutyronitrile in Pna2_1, two atoms wrong at R1 0.049, C...C 1.78
  A).  Returns [(i, j, distance, sum of radii)], symmetry copies included."""
  n = xray_structure.scatterers().size()
  types = list(xray_structure.scatterers().extract_scattering_types())
  main = [t in COVALENT_MAIN_GROUP for t in types]
  if sum(main) < 1 or (n < 2 and xray_structure.space_group().order_z() == 1):
    return []
  radii = [covalent_radius(t) for t in types]
  cutoff = 2 * max(r for r, m in zip(radii, main) if m) + gap
  found = []
  for i, j, _, d in symmetry_pairs(xray_structure, cutoff):
    ideal = radii[i] + radii[j]
    if main[i] and main[j] and (d < ideal - below or ideal + above < d < ideal + gap):
      found.append((i, j, d, ideal))
  return found


def contact_tolerances(d_min):
  """impossible_contacts' bounds at a resolution: positions are less sure
  below atomic resolution, so the bond window widens by 0.3 A per A of d_min
  beyond 1.0 A (the gap's top capped at +0.60 A).  A right ylid structure
  solved at 1.5 A has C-O bonds of 1.62 and 1.65 A, radii sum +0.20-0.23 A."""
  slack = 0.3 * max(0.0, float(d_min) - 1.0)
  return dict(above=0.20 + slack, gap=max(0.20 + slack, min(0.45 + slack, 0.60)))


def distances_to_structure(xray_structure, sites_frac, cutoff=3.0):
  """For each fractional site, the shortest distance (A) to any atom of the
  structure or any of its symmetry copies (cutoff where none is closer)."""
  from cctbx.array_family import flex
  if xray_structure.scatterers().size() == 0 or len(sites_frac) == 0:
    return np.full(len(sites_frac), cutoff)
  result = xray_structure.closest_distances(sites_frac=flex.vec3_double(list(sites_frac)),
                                            distance_cutoff=cutoff)
  d = result.smallest_distances.as_numpy_array()
  return np.where(d < 0, cutoff, d)


# --- refinement, completion, recycling ------------------------------------------

def refine(xray_structure, f_obs, cycles=2, max_iterations=25, refine_u_iso=True,
           max_reflections=6000, restraints=None, one_u_iso=False):
  """L-BFGS least squares on |F_obs| (cctbx.xray.minimization): sites, then
  sites and isotropic U.  The overall scale is solved analytically by the
  target at every step.  The structure is refined in place.

  A few atoms need few reflections: above max_reflections a fixed random
  subset (spread over all resolutions) is used, which keeps a 10-atom
  refinement well under a second; R1 and CC are always computed on all data.

  restraints: a restraints.MoleculeRestraints (a known molecule's geometry),
  used only while it applies to the structure (its atoms the molecule's).
  one_u_iso: one overall U_iso (fitted) instead of one per atom."""
  from cctbx import xray
  from cctbx.array_family import flex
  import scitbx.lbfgs
  if xray_structure.scatterers().size() == 0:
    return xray_structure  # nothing to refine (an empty start; completion may add atoms)
  if max_reflections and f_obs.size() > max_reflections:
    keep = np.random.default_rng(0).permutation(f_obs.size())[:max_reflections]
    f_obs = f_obs.select(flex.size_t(sorted(keep.tolist())))
  target = xray.target_functors.unified_least_squares_residual(f_obs)
  termination = scitbx.lbfgs.termination_parameters(max_iterations=max_iterations)
  if restraints is not None and restraints.applies_to(xray_structure):
    from cctbx_p2a.restraints import RestrainedLbfgs
    minimise = functools.partial(RestrainedLbfgs, restraints)
    restraints.n_used += 1
  else:
    minimise = xray.minimization.lbfgs
    if restraints is not None:
      restraints.n_skipped += 1
  for cycle in range(cycles):
    if refine_u_iso and cycle > 0:
      fit_overall_u_iso(xray_structure, f_obs, target)
    scatterers = xray_structure.scatterers()
    scatterers.flags_set_grads(state=False)
    everything = flex.size_t_range(scatterers.size())
    scatterers.flags_set_grad_site(iselection=everything)
    if refine_u_iso and cycle > 0 and not one_u_iso:
      scatterers.flags_set_grad_u_iso(iselection=everything)
    before = scatterers.deep_copy()
    try:
      minimise(target_functor=target, xray_structure=xray_structure,
               lbfgs_termination_params=termination, structure_factor_algorithm="direct")
    except RuntimeError as e:  # a U_iso stepping far below zero (a wrong element or atom)
      if "arg_limit" not in str(e):
        raise
      xray_structure.replace_scatterers(before)
      if cycle > 0:  # sites only, keeping the overall U
        scatterers = xray_structure.scatterers()
        scatterers.flags_set_grads(state=False)
        scatterers.flags_set_grad_site(iselection=everything)
        minimise(target_functor=target, xray_structure=xray_structure,
                 lbfgs_termination_params=termination, structure_factor_algorithm="direct")
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


# The shortest bonds between non-H atoms in small molecules: C#O 1.13 A,
# C#N 1.14-1.16 A, C#C 1.18-1.20 A, less a margin.  A difference-map peak
# this close to an atom can be a real atom (a nitrile N beside its C); the
# F_obs map's shoulders of an atom's own peak need the wider 1.2 A.
SHORTEST_BOND = 1.05


def rebuild_min_distance(d_min):
  """How close to an atom the rebuild may put a difference-map peak: down to
  SHORTEST_BOND where the data resolve a nitrile (d_min up to 1.05 A), 1.2 A
  below that, where peaks this close to an atom are its ripples (with 1.05 A
  the ylid at 1.5 A ended 12 of 14 right instead of solved)."""
  return min(1.2, max(SHORTEST_BOND, float(d_min)))


def complete(xray_structure, f_obs, n_wanted, element="C", min_distance=1.2, avoid=None,
             avoid_distance=0.7, difference=False):
  """Add the strongest peaks of the F_obs map phased by the current model,
  away from existing atoms, until n_wanted atoms are present.  avoid: an
  xray.structure of sites already rejected (their peaks are skipped).
  difference: peaks of the F_obs - k|F_calc| map instead, where an atom
  missing beside a present one (1.3 A apart at 1.2 A: a shoulder, not a
  peak, of the F_obs map) stands out."""
  from cctbx import maptbx, xray
  n_missing = n_wanted - xray_structure.scatterers().size()
  if n_missing <= 0:
    return xray_structure, 0
  f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  if difference:
    coeffs = model_phased_coefficients(f_obs, f_calc)[0]
  else:
    coeffs = f_obs.phase_transfer(f_calc)
  fft_map = coeffs.fft_map(resolution_factor=0.25,
                           symmetry_flags=maptbx.use_space_group_symmetry).apply_sigma_scaling()
  search = fft_map.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=1.0,
    max_clusters=4 * n_wanted + 20)).all(max_clusters=4 * n_wanted + 20)
  added = 0
  for site_frac in search.sites():
    if added == n_missing:
      break
    if avoid is not None and avoid.scatterers().size() and \
        distances_to_structure(avoid, [site_frac], avoid_distance)[0] < avoid_distance:
      continue
    if distances_to_structure(xray_structure, [site_frac], min_distance)[0] >= min_distance:
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
  diff_coeffs, k = model_phased_coefficients(f_obs, f_calc)
  gridding = f_obs.crystal_gridding(resolution_factor=0.25, symmetry_flags=maptbx.use_space_group_symmetry)
  model_map = (f_calc * k).fft_map(crystal_gridding=gridding).real_map_unpadded()
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
  room = None if max_atoms is None else max(max_atoms - result.scatterers().size(), 0)
  peaks = diff_fft.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=1.0, max_clusters=50),
    verify_symmetry=False).all(max_clusters=50)
  n_added = 0
  for site, height in zip(peaks.sites(), peaks.heights()):
    if height < add_ratio * reference:
      break
    if distances_to_structure(result, [site], min_distance)[0] < min_distance:
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


def drop_overlapping_atoms(xray_structure, min_distance=0.8):
  """Of atoms that refinement pulled onto one another (or onto a symmetry
  copy of one another: a junk atom beside a heavy atom's peak ends up there),
  keep the one with the lowest U_iso.  Returns (structure, n dropped)."""
  from cctbx.array_family import flex
  scatterers = xray_structure.scatterers()
  order = np.argsort([sc.u_iso for sc in scatterers], kind="stable")
  keep = []
  for i in order:
    if keep:
      kept = xray_structure.select(flex.size_t(sorted(keep)))
      if distances_to_structure(kept, [scatterers[int(i)].site], min_distance)[0] < min_distance:
        continue
    keep.append(int(i))
  if len(keep) == scatterers.size():
    return xray_structure, 0
  return xray_structure.select(flex.size_t(sorted(keep))), scatterers.size() - len(keep)


def relabel(xray_structure):
  """Labels element + running number (C1, N2, S3, ...): unique, as SHELX and
  CIF writers need after atoms were added and dropped."""
  for i, sc in enumerate(xray_structure.scatterers()):
    sc.label = "%s%d" % (sc.scattering_type, i + 1)
  return xray_structure


def peak_sites(map_coeffs, n_sites, min_distance=1.0, resolution_factor=0.25):
  """Fractional sites (n, 3) of the n_sites highest peaks of the map of
  `map_coeffs` (space-group symmetry used; peaks closer than min_distance,
  symmetry mates included, are merged)."""
  from cctbx import maptbx
  fft_map = map_coeffs.fft_map(resolution_factor=resolution_factor,
                               symmetry_flags=maptbx.use_space_group_symmetry)
  fft_map.apply_sigma_scaling()
  peaks = fft_map.peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=min_distance,
    max_clusters=n_sites)).all(max_clusters=n_sites)
  return np.array(peaks.sites()).reshape(-1, 3)


def structure_of_sites(crystal_symmetry, sites_frac, element="C", u_iso=0.02):
  """Atoms of one element at the given fractional sites, labelled C1, C2..."""
  from cctbx import xray
  from cctbx.array_family import flex
  scatterers = flex.xray_scatterer()
  for i, site in enumerate(sites_frac):
    scatterers.append(xray.scatterer(label="%s%d" % (element, i + 1), site=tuple(site), u=u_iso,
                                     scattering_type=element))
  return xray.structure(crystal_symmetry=crystal_symmetry, scatterers=scatterers)


def peaks_as_structure(map_coeffs, n_sites, element="C", u_iso=0.02, min_distance=1.0,
                       resolution_factor=0.25, crystal_symmetry=None):
  """The n_sites highest peaks of the map of `map_coeffs` as an xray.structure
  (peak_sites), in crystal_symmetry (default: the map coefficients')."""
  return structure_of_sites(crystal_symmetry or map_coeffs.crystal_symmetry(),
                            peak_sites(map_coeffs, n_sites, min_distance, resolution_factor),
                            element, u_iso)


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
    coeffs = model_phased_coefficients(f_obs, f_calc, fo_weight=2)[0]
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
  rng = np.random.default_rng(seed)
  cs = f_obs.crystal_symmetry()  # random sites in the data's own space group
  best, best_r1 = None, np.inf
  for _ in range(n_starts):
    xs = structure_of_sites(cs, rng.uniform(0, 1, (n_sites, 3)), element)
    xs, _ = recycle(xs, f_obs, n_sites, element=element, max_cycles=max_cycles,
                    max_reflections=max_reflections)
    refine(xs, f_obs, max_reflections=max_reflections)
    r1 = r1_and_cc(f_obs, xs)[0]
    if r1 < best_r1:
      best, best_r1 = xs, r1
  return best


# --- with the PHIL scopes ---------------------------------------------------------

# the known molecule's restraints while finish() works on its start: every
# refinement of the finishing sees them without each step passing them on
_molecule_restraints = contextvars.ContextVar("molecule_restraints", default=None)


def refine_with_params(xs, f_obs, params):
  """refine() with the `refinement` PHIL scope (and the known molecule's
  restraints, where finish() was given them and they still apply)."""
  rp = params.refinement
  restraints = _molecule_restraints.get()
  one_u_iso = bool(rp.known_molecule_one_u_iso and restraints is not None and restraints.applies_to(xs)
                   and not enough_data(f_obs, xs.scatterers().size(), params))
  return refine(xs, f_obs, cycles=rp.cycles, max_iterations=rp.max_iterations,
                max_reflections=rp.max_reflections, restraints=restraints, one_u_iso=one_u_iso)


def refine_complete_recycle(xs, f_obs, n_sites, element, params, staged=True, retype=None):
  """Refine a start, complete it from the phased F_obs map, and recycle (dual
  space) when the model still does not explain the data.  retype(xs, fit)
  -> (xs, fit, note or None) gives atoms their elements after refinement and
  after recycling (whose peaks carry none), so that R1 judges the sites.
  Returns (structure, R1, CC, F_calc, [what was done])."""
  rp = params.refinement
  steps = []
  if staged and rp.start_d_min and f_obs.d_min() < rp.start_d_min - 0.05:
    # a rough start converges at low resolution first, then all data are used
    low = f_obs.resolution_filter(d_min=rp.start_d_min)
    xs, r1_low, _, _, _ = refine_complete_recycle(xs, low, n_sites, element, params, staged=False,
                                                  retype=retype)
    steps.append("first to %.1f A (R1 %.3f)" % (rp.start_d_min, r1_low))
  refine_with_params(xs, f_obs, params)
  xs, n_merged = drop_overlapping_atoms(xs)
  if n_merged:
    steps.append("%d atoms refined onto others dropped" % n_merged)
  if rp.complete and xs.scatterers().size() < n_sites:
    xs, added = complete(xs, f_obs, n_sites, element=element)
    if added:
      steps.append("completion added %d atoms" % added)
      refine_with_params(xs, f_obs, params)
  fit = r1_and_cc(f_obs, xs)
  steps.append("refined R1 %.3f" % fit[0])
  if retype is not None:
    xs, fit, note = retype(xs, fit)
    if note:
      steps.append(note)
  if rp.recycle_cycles and not explains_data(fit[0], fit[1], params):
    recycled, n_cycles = recycle(xs, f_obs, n_sites, element=element,
                                 max_cycles=rp.recycle_cycles,
                                 max_reflections=rp.max_reflections)
    refine_with_params(recycled, f_obs, params)
    recycled, _ = drop_overlapping_atoms(recycled)
    fit_new = r1_and_cc(f_obs, recycled)
    if retype is not None:
      recycled, fit_new, _ = retype(recycled, fit_new)
    steps.append("%d recycling cycles (R1 %.3f)" % (n_cycles, fit_new[0]))
    if fit_new[0] < fit[0]:
      xs, fit = recycled, fit_new
  return (xs,) + tuple(fit) + (steps,)


# --- elements ----------------------------------------------------------------------

def atomic_number(element):
  from cctbx.eltbx import tiny_pse
  return tiny_pse.table(element).atomic_number()


def heavy_scattering_fraction(xray_structure, above_z=10):
  """The share of sum(Z^2) over the non-H atoms carried by atoms heavier than
  Ne: above one half, R1 hardly sees where the light atoms are."""
  z2 = np.array([atomic_number(sc.scattering_type) ** 2 for sc in xray_structure.scatterers()
                 if sc.scattering_type not in ("H", "D")], float)
  return float(z2[z2 > above_z ** 2].sum() / z2.sum()) if z2.sum() else 0.0


def composition_sites(composition):
  """Element -> number of sites in the asymmetric unit, hydrogens left out
  (p2a places non-H atoms).  Fractional counts (an atom on a special
  position, from SHELX UNIT / Z) take a whole site."""
  if not composition:
    return None
  return {e: int(np.ceil(n - 1e-6)) for e, n in composition.items() if e not in ("H", "D") and n > 0}


def elements_for_sites(composition, n_sites):
  """One element per site, heaviest first (for sites ranked by scattering
  power); sites beyond the composition take its most common element."""
  if not composition:
    return ["C"] * n_sites
  ordered = sorted(composition.items(), key=lambda kv: -atomic_number(kv[0]))
  elements = [e for e, n in ordered for _ in range(n)]
  return (elements + [most_common_element(composition)] * n_sites)[:n_sites]


def composition_counts(xray_structure):
  """Element -> number of sites (what p2a and the finishing are told)."""
  counts = {}
  for sc in xray_structure.scatterers():
    counts[sc.scattering_type] = counts.get(sc.scattering_type, 0) + 1
  return counts


def elements_differ(xray_structure, composition):
  """(the model's element counts, the composition's) as text when a model
  with all of the composition's sites holds other elements; else None.
  Why: the finishing types sites by density and keeps the typing only if R1
  does not rise; a wrong light atom beside a heavy one (which R1 hardly sees)
  can leave a model that no placement of the composition's elements fits."""
  if not composition:
    return None
  counts = composition_counts(xray_structure)
  if sum(counts.values()) != sum(composition.values()) or counts == dict(composition):
    return None

  def text(c):
    return " ".join("%s%d" % (e, c[e]) for e in sorted(c, key=lambda e: -atomic_number(e)))
  return text(counts), text(composition)


def most_common_element(composition):
  """The element of most sites (the lighter on a tie); C without a
  composition.  Peaks are placed as it before elements are assigned."""
  if not composition:
    return "C"
  return max(composition.items(), key=lambda kv: (kv[1], -atomic_number(kv[0])))[0]


def density_at_atoms(xray_structure, f_obs, f_calc=None):
  """The F_obs map phased by the model (sigma scaled), at each atom: with one
  U_iso for all, it ranks the atoms by how many electrons the data put there,
  whatever element the model gave them."""
  from cctbx import maptbx
  if f_calc is None:
    f_calc = f_obs.structure_factors_from_scatterers(xray_structure, algorithm="direct").f_calc()
  fft_map = f_obs.phase_transfer(f_calc).fft_map(
    resolution_factor=0.25, symmetry_flags=maptbx.use_space_group_symmetry)
  fft_map.apply_sigma_scaling()
  density = fft_map.real_map_unpadded()
  return np.array([maptbx.eight_point_interpolation(density, sc.site)
                   for sc in xray_structure.scatterers()])


def assign_elements(xray_structure, f_obs, composition, params, fit=None):
  """Give the composition's elements to the sites the data say scatter most.

  Peaks of a start map and atoms after recycling carry no element of their
  own.  Every site is made the composition's most common element and
  refined; the F_obs map phased by that uniform model then ranks the sites by
  the electrons the data put there, and the heaviest elements go to the
  highest (Mn, S, Cl ... then O, N, C).  The typed model is kept unless it
  explains the data clearly worse than the structure it came from (then the
  ranking was wrong, and the note says so).  fit = (R1, CC, F_calc) of the
  structure.  Returns (structure, fit, note)."""
  from cctbx import xray
  sites_of = composition_sites(composition)
  if fit is None:
    fit = r1_and_cc(f_obs, xray_structure)
  n = xray_structure.scatterers().size()
  if not sites_of or n == 0:
    return xray_structure, fit, None
  wanted = elements_for_sites(sites_of, n)
  most_common = most_common_element(sites_of)

  def typed_by_density(ranked):
    """`ranked`'s sites given the wanted elements, heaviest to the highest
    density, then refined: (structure, fit)."""
    order = np.argsort(-density_at_atoms(ranked, f_obs), kind="stable")
    scatterers = ranked.scatterers().deep_copy()
    for rank, i in enumerate(order):
      scatterers[int(i)].scattering_type = wanted[rank]
    typed = xray.structure(crystal_symmetry=ranked.crystal_symmetry(), scatterers=scatterers)
    refine_with_params(typed, f_obs, params)
    return typed, r1_and_cc(f_obs, typed)

  uniform = xray_structure.deep_copy_scatterers()
  for sc in uniform.scatterers():
    sc.scattering_type = most_common
  refine_with_params(uniform, f_obs, params)
  typed, typed_fit = typed_by_density(uniform)
  if typed_fit[0] > fit[0] + 0.02 and len(set(sc.scattering_type for sc in xray_structure.scatterers())) > 1:
    # a model already typed (atoms moved by difference maps come back as the
    # main element): refined as all-C, its iodine smears and drags the rest
    # (a right P4_1 crystal, 20/20 at R1 0.031, typed to 0.19); ranked by its
    # own map, its heavy atoms keep their sites
    typed, typed_fit = min(typed_by_density(xray_structure.deep_copy_scatterers()), (typed, typed_fit),
                           key=lambda t: t[1][0])
  counts = {}
  for e in wanted:
    counts[e] = counts.get(e, 0) + 1
  what = " ".join("%s%d" % kv for kv in counts.items())
  if typed_fit[0] > fit[0] + 0.02:
    return xray_structure, fit, ("elements by density at the atoms (%s) gave R1 %.3f, worse than "
                                 "%.3f: kept the previous elements" % (what, typed_fit[0], fit[0]))
  return relabel(typed), typed_fit, ("elements from the composition by density at the atoms "
                                     "(%s); R1 %.3f" % (what, typed_fit[0]))


def type_heavy_atoms(xs, fit, f_obs, params, max_atoms=2):
  """When the composition is not known every site starts as carbon; a sulphur
  (or heavier) modelled as carbon drags the scale up and every other U_iso
  with it, and the difference map is then useless for counting.  The atom
  with the lowest refined U_iso, when well below the median, is tried as
  each of sites.heavy_elements.  fit = (R1, CC, F_calc) of xs.
  Returns (structure, its (R1, CC, F_calc), [what was changed])."""
  from cctbx import xray
  changed = []
  for _ in range(max_atoms):
    u = np.array([sc.u_iso for sc in xs.scatterers()])
    light = [i for i, sc in enumerate(xs.scatterers()) if sc.scattering_type not in
             params.sites.heavy_elements]
    if len(light) < 2:
      break
    i = min(light, key=lambda j: u[j])
    if u[i] > 0.5 * np.median(u[light]):
      break
    best = None
    for element in params.sites.heavy_elements:
      scatterers = xs.scatterers().deep_copy()
      scatterers[i].scattering_type = element
      scatterers[i].label = "%s%d" % (element, i + 1)
      trial = refine_with_params(xray.structure(crystal_symmetry=xs.crystal_symmetry(),
                                                scatterers=scatterers), f_obs, params)
      trial_fit = r1_and_cc(f_obs, trial)
      if best is None or trial_fit[0] < best[1][0]:
        best = (trial, trial_fit, element)
    if best[1][0] > 0.9 * fit[0]:
      break
    xs, fit = best[0], best[1]
    changed.append("site %d as %s (R1 %.3f)" % (i + 1, best[2], fit[0]))
  return xs, fit, changed


def settle_atom_count(xs, fit, f_obs, element, params, max_atoms=None):
  """Let difference maps correct the model: rounds of adjust_atom_count
  + refinement, each kept only if R1 does not rise by more than 0.005.  With
  an estimated count atoms may be added and dropped freely; with a known one
  (max_atoms) a wrong atom can only move to a better peak.  fit = (R1, CC,
  F_calc) of xs.  Returns (structure, R1, CC, F_calc, added, dropped)."""
  sp = params.sites
  r1, cc, f_calc = fit
  added = dropped = 0
  for _ in range(sp.count_rounds):
    trial, n_add, n_drop = adjust_atom_count(
      xs, f_obs, element=element, add_ratio=sp.count_add_ratio, drop_ratio=sp.count_drop_ratio,
      max_atoms=max_atoms)
    if n_add == n_drop == 0:
      break
    refine_with_params(trial, f_obs, params)
    trial, n_merged = drop_overlapping_atoms(trial)
    n_drop += n_merged
    r1_trial, cc_trial, f_calc_trial = r1_and_cc(f_obs, trial)
    if r1_trial > r1 + 0.005:
      break
    xs, r1, cc, f_calc = trial, r1_trial, cc_trial, f_calc_trial
    added, dropped = added + n_add, dropped + n_drop
  return xs, r1, cc, f_calc, added, dropped


def suspect_atoms(xray_structure, success_params, elements_known=True):
  """Atoms the data do not see, as a numpy bool mask: U_iso at
  success.max_u_iso or above, or -- with the elements known (a composition)
  -- above both success.u_iso_outlier_min and success.u_iso_outlier_ratio
  times the structure's median U_iso.  A wrong atom smears itself out; right
  ones, in measured crystals, stay within 3x the median (docs/crystals.md).
  Without a composition every atom is carbon, and U_iso absorbs the element:
  O typed C runs to the lower bound, C beside it to 5x the median (a right
  18-atom structure at 2.75 A), so only max_u_iso applies."""
  u = np.array([sc.u_iso for sc in xray_structure.scatterers()])
  if not len(u):
    return np.zeros(0, bool)
  sp = success_params
  suspect = u >= sp.max_u_iso
  if elements_known:
    suspect |= (u > sp.u_iso_outlier_min) & (u > sp.u_iso_outlier_ratio * np.median(u))
  return suspect


def atoms_to_rebuild(xray_structure, f_obs, params, elements_known=True):
  """suspect_atoms, and -- for bonded chemistry (claims_bonds), with the
  elements known and data to success.lone_carbon_d_min -- the carbons of
  lone_carbons' fragments, which the verdict refuses: the rebuild gives
  them a place the difference map supports before the verdict is asked
  (the Cu(NCCH3)2(OH)Br complex at 1.03 A whose acetonitrile carbons
  refined as a pair apart from the molecule)."""
  suspect = suspect_atoms(xray_structure, params.success, elements_known)
  if (elements_known and reaches(f_obs, params.success.lone_carbon_d_min) and len(suspect)
      and claims_bonds(xray_structure)):   # the paper's points (3 A apart) are all "lone carbons"
    suspect[lone_carbons(xray_structure)] = True
  return suspect


def refill_from_difference_map(xs, keep, avoid, f_obs, n_sites, element, params, retype=None,
                               attempts=1):
  """One round of the rebuild and of the expansion: keep the atoms where
  `keep` (numpy bool) is set, refine, add the strongest difference-map peaks
  (model phases) up to n_sites -- none within 0.7 A of `avoid`, the atoms
  just dropped -- refine, merge atoms that refined onto one site (with
  attempts > 1, then fill again), and type the elements (retype).
  Returns (structure, (R1, CC, F_calc))."""
  from cctbx.array_family import flex
  current = xs.select(flex.bool(keep.tolist()))
  refine_with_params(current, f_obs, params)
  for _ in range(attempts):
    current, _ = complete(current, f_obs, n_sites, element=element, avoid=avoid, difference=True,
                          min_distance=rebuild_min_distance(f_obs.d_min()))
    refine_with_params(current, f_obs, params)
    current, n_merged = drop_overlapping_atoms(current)
    if not n_merged:
      break
  fit = r1_and_cc(f_obs, current)
  if retype is not None:
    current, fit, _ = retype(current, fit)
  return current, fit


def rebuild_suspect_atoms(xs, fit, f_obs, n_sites, element, params, retype=None,
                          elements_known=True):
  """Replace the suspect atoms (atoms_to_rebuild) of a model that otherwise
  explains the data: drop them, refine, put the strongest peaks of the difference map (model
  phases) in their place -- not where an atom was dropped in the last
  refinement.rebuild_tabu_rounds rounds -- and refine again.
  Rounds go on while suspects remain, until refinement.rebuild_rounds rounds
  in a row bring no lower R1 (or refinement.rebuild_max_rounds in all); the
  model of lowest R1 is kept.  A model still improving is not cut off: the
  ylid at 1.5 A went 10 -> 13 of 14 atoms right in 6 rounds, and a 7th
  completed it.  This completes a half-right dual-space start (18 of
  23 sucrose atoms right at 1.2 A, R1 0.231 -> all 23, R1 0.066).
  fit = (R1, CC, F_calc) of xs; elements_known: see suspect_atoms.
  Returns (structure, fit, note or None)."""
  from cctbx.array_family import flex
  best, best_fit, n_rounds, since_best = xs, fit, 0, 0
  dropped_by_round = []
  current = xs
  while since_best < params.refinement.rebuild_rounds and n_rounds < params.refinement.rebuild_max_rounds:
    suspect = atoms_to_rebuild(current, f_obs, params, elements_known)
    if not suspect.any() or suspect.all():
      break
    n_rounds += 1
    dropped_by_round.append(current.select(flex.bool(suspect.tolist())))
    tabu = dropped_by_round[-params.refinement.rebuild_tabu_rounds:]
    rejected = tabu[0]
    for more in tabu[1:]:
      rejected = rejected.concatenate(more)
    current, current_fit = refill_from_difference_map(
      current, ~suspect, rejected, f_obs, n_sites, element, params, retype, attempts=2)
    since_best += 1
    if current_fit[0] < best_fit[0] - 0.002:
      best, best_fit, since_best = current, current_fit, 0
  if best is xs:
    return xs, fit, None
  return best, best_fit, "suspect atoms rebuilt from difference maps in %d rounds (R1 %.3f)" % (
    n_rounds, best_fit[0])


def expand_partial_structure(xs, fit, f_obs, n_sites, element, params, retype=None):
  """Partial-structure expansion of a model that does not explain the data:
  each round drops the refinement.expand_omit_fraction of atoms the F_obs map
  (model phases) fills least per electron, refines the rest, puts the
  strongest difference-map peaks where atoms are missing (not on the sites
  just dropped), refines, and types the elements.  The walk goes on from
  each round's model whether or not it is better, so a wrong atom that held
  the phases in place can leave; the model of lowest R1 is kept, and the
  rounds stop after refinement.expand_rounds in a row without a lower R1,
  or when the best model explains the data.
  Why: below atomic resolution the finishing's recycling (the n highest
  peaks of a 2Fo-Fc map) leaves a half-right dual-space start half right;
  dropping the weakest atoms and completing from the difference map lets
  the right half pull in the rest (thpp at 1.5 A: 8 of 16 atoms -> 16/16,
  R1 0.11).  fit = (R1, CC, F_calc) of xs.  Returns (structure, fit, note or None)."""
  from cctbx.array_family import flex
  rp = params.refinement
  best, best_fit, n_rounds, since_best = xs, fit, 0, 0
  current = xs
  while since_best < rp.expand_rounds and n_rounds < rp.expand_max_rounds:
    n = current.scatterers().size()
    if n < 2:
      break
    n_rounds += 1
    per_electron = density_at_atoms(current, f_obs) / np.array(
      [atomic_number(sc.scattering_type) for sc in current.scatterers()], float)
    drop = np.zeros(n, bool)
    drop[np.argsort(per_electron)[:max(1, int(round(rp.expand_omit_fraction * n)))]] = True
    current, current_fit = refill_from_difference_map(
      current, ~drop, current.select(flex.bool(drop.tolist())), f_obs, n_sites, element, params,
      retype)
    since_best += 1
    if current_fit[0] < best_fit[0] - 0.002:
      best, best_fit, since_best = current, current_fit, 0
      if explains_data(best_fit[0], best_fit[1], params):
        break
  if best is xs:
    return xs, fit, None
  return best, best_fit, "partial-structure expansion: %d rounds (R1 %.3f)" % (n_rounds, best_fit[0])


def fill_missing_atoms(xs, fit, f_obs, n_sites, element, params, retype=None):
  """A model short of the composition's count after everything else: add the
  strongest difference-map peaks (model phases) down to
  refinement.fill_min_distance from an atom, refine, merge atoms that
  refined onto one site, type the elements; kept only when R1 falls by
  refinement.fill_min_r1_gain.  Why: the rebuild keeps peaks 1.2 A from an
  atom at d_min > 1.05 A (closer ones are mostly ripples), but a missing
  atom bonded to two present ones can sit closer than that to one of them:
  thpp at 1.5 A ended 15 of 16 atoms, R1 0.180, with a 1.77 A C-F contact;
  filled this way it is 16/16, R1 0.111.  The R1 gain keeps a ripple out.
  fit = (R1, CC, F_calc) of xs.  Returns (structure, fit, note or None)."""
  rp = params.refinement
  n = xs.scatterers().size()
  if not rp.fill_missing or n >= n_sites or n < 2:
    return xs, fit, None
  trial, added = complete(xs.deep_copy_scatterers(), f_obs, n_sites, element=element, difference=True,
                          min_distance=rp.fill_min_distance)
  if not added:
    return xs, fit, None
  refine_with_params(trial, f_obs, params)
  trial, _ = drop_overlapping_atoms(trial)
  trial_fit = r1_and_cc(f_obs, trial)
  if retype is not None:
    trial, trial_fit, _ = retype(trial, trial_fit)
  if trial_fit[0] > fit[0] - rp.fill_min_r1_gain:
    return xs, fit, None
  return trial, trial_fit, "%d missing atom(s) filled from the difference map: %d -> %d sites (R1 %.3f)" % (
    added, n, trial.scatterers().size(), trial_fit[0])


# --- the whole finishing sequence --------------------------------------------------

@dataclass
class Finished:
  """A finished structure and how well it explains the data."""
  xray_structure: object
  r1: float
  cc: float
  f_calc: object
  steps: list = field(default_factory=list)
  n_sites_source: str = "composition"


def finish(xs, f_obs, params, n_sites, composition=None, count_known=True, max_atoms=None,
           keep_elements=False, restraints=None):
  """Refine, complete and recycle a start, typing the elements as it goes;
  settle the atom count with difference maps.  The same for every method.

  composition: element -> sites (None: every site starts as carbon and heavy
  atoms are found from the data).  count_known: n_sites is the true count
  (from a composition) rather than an estimate; an estimate may grow to
  max_atoms.  keep_elements: the start's elements stand while it keeps the
  composition's counts (a known molecule's atoms carry their own; typing by
  density at 2 A put S and N on each other's sites).  restraints: a
  restraints.MoleculeRestraints that every refinement uses while the atoms
  are still the molecule's (known_molecule_restraints).  Returns a Finished."""
  token = _molecule_restraints.set(restraints)
  try:
    done = _finish(xs, f_obs, params, n_sites, composition, count_known, max_atoms, keep_elements)
  finally:
    _molecule_restraints.reset(token)
  if restraints is not None:
    done.steps.insert(0, "restrained to the molecule's geometry (%d bonds, %d 1-3 distances)%s" % (
      restraints.n_bonds, restraints.n_angles,
      "; not in %d of %d refinements, once atoms were replaced or moved off it" % (
        restraints.n_skipped, restraints.n_used + restraints.n_skipped)
      if restraints.n_skipped else ""))
  return done


def _finish(xs, f_obs, params, n_sites, composition, count_known, max_atoms, keep_elements):
  sites_of = composition_sites(composition)
  light = elements_for_sites(sites_of, n_sites)[-1] if sites_of else "C"

  def retype(xs, fit):
    if keep_elements and composition_counts(xs) == sites_of:
      return xs, fit, None   # a known molecule's atoms carry their own elements
    if sites_of:
      return assign_elements(xs, f_obs, sites_of, params, fit)
    if params.sites.heavy_elements:
      xs, fit, changed = type_heavy_atoms(xs, fit, f_obs, params)
      return xs, fit, ("heavy atoms from refined U_iso: " + "; ".join(changed)) if changed else None
    return xs, fit, None

  xs, r1, cc, f_calc, steps = refine_complete_recycle(xs, f_obs, n_sites, light, params,
                                                      retype=retype)
  source = "composition" if count_known else "estimated"
  if params.sites.count_rounds:
    n_before = xs.scatterers().size()
    xs, r1, cc, f_calc, added, dropped = settle_atom_count(
      xs, (r1, cc, f_calc), f_obs, light, params, max_atoms=n_sites if count_known else max_atoms)
    if count_known and dropped:
      steps.append("difference maps moved %d atoms (R1 %.3f)" % (dropped, r1))
    elif not count_known:
      source = "estimated: %d, %+d/-%d by difference maps" % (n_sites, added, dropped)
      if added or dropped:
        steps.append("atom count %d -> %d from difference maps (added %d, dropped %d)"
                     % (n_before, xs.scatterers().size(), added, dropped))
    if added or dropped:
      xs, (r1, cc, f_calc), _ = retype(xs, (r1, cc, f_calc))
  if (params.refinement.expand_rounds and not explains_data(r1, cc, params)
      and enough_data(f_obs, n_sites, params)):
    xs, (r1, cc, f_calc), note = expand_partial_structure(xs, (r1, cc, f_calc), f_obs, n_sites, light,
                                                          params, retype=retype)
    if note:
      steps.append(note)
  if (params.refinement.rebuild_rounds and explains_data(r1, cc, params)
      and enough_data(f_obs, xs.scatterers().size(), params)):
    xs, (r1, cc, f_calc), note = rebuild_suspect_atoms(xs, (r1, cc, f_calc), f_obs, n_sites, light,
                                                       params, retype=retype,
                                                       elements_known=bool(sites_of))
    if note:
      steps.append(note)
  if count_known:
    xs, (r1, cc, f_calc), note = fill_missing_atoms(xs, (r1, cc, f_calc), f_obs, n_sites, light, params,
                                                    retype=retype)
    if note:
      steps.append(note)
  return Finished(xray_structure=relabel(xs), r1=r1, cc=cc, f_calc=f_calc, steps=steps,
                  n_sites_source=source)

"""Synthetic stage: random molecules after Hurwitz (2020), their data and targets.

A training pair is made the way a user's data is solved: the random molecule
becomes an ``xray.structure`` in a P1 cell, cctbx computes |F| (with optional
noise and missing reflections), and :func:`cctbx_p2a.patterson.model_input`
turns them into the network input.  Only the target (the atoms and their
inverses drawn on the output grid) needs the truth.

The three ambiguities the paper removes are removed here: the target is centred
on the centroid (translation), holds atoms and inverses (inversion), and the
molecule is small next to the cell (vector origin).

Two sources of molecules (synthetic.molecule_source): the paper's random
points (the default, behind the shipped models and the paper/realistic
suites), or real chemistry from :mod:`cctbx_p2a.molecules` (RDKit), whose
hydrogens scatter in the data but are never targets: the target, the
reference a solution is scored on, and the composition hold non-H atoms only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cctbx import crystal, uctbx
from cctbx.array_family import flex
from libtbx.utils import Sorry

from cctbx_p2a import patterson


def random_molecule(rng, n_atoms=10, extent=6.125, min_distance=3.0, max_tries=200):
  """Cartesian sites (n, 3) drawn uniformly in [-extent, extent]^3 with every
  pair at least min_distance apart, then mean-centred (the paper's recipe)."""
  for _ in range(max_tries):
    sites = []
    for _ in range(50 * n_atoms):
      p = rng.uniform(-extent, extent, 3)
      if all(np.sum((p - q) ** 2) >= min_distance ** 2 for q in sites):
        sites.append(p)
        if len(sites) == n_atoms:
          sites = np.array(sites)
          return sites - sites.mean(axis=0)
  raise Sorry("Cannot place %d atoms %.2f A apart within +-%.2f A: lower n_atoms or "
              "min_distance, or raise extent." % (n_atoms, min_distance, extent))


def draw(rng, lo_hi):
  lo, hi = lo_hi
  return float(lo) if hi <= lo else float(rng.uniform(lo, hi))


def draw_unit_cell(rng, params):
  if not params.random_cell:
    return params.unit_cell
  for _ in range(100):
    edges = rng.uniform(*params.cell_edges, 3)
    angles = rng.uniform(*params.cell_angles, 3)
    try:
      uc = uctbx.unit_cell(list(edges) + list(angles))
    except RuntimeError:
      continue  # angles that make no cell
    if uc.volume() > 0.5 * np.prod(edges):  # not too flat
      return uc
  raise Sorry("Could not draw a sane unit cell from cell_edges/cell_angles.")


def draw_elements(rng, params, n):
  elements = [str(e) for e in params.elements]
  chosen = [elements[i] for i in rng.integers(0, len(elements), n)]
  if params.heavy_atom_fraction > 0 and rng.uniform() < params.heavy_atom_fraction:
    chosen[int(rng.integers(0, n))] = params.heavy_element
  return chosen


def place_in_cell(sites_cart, unit_cell, elements, u_iso, rng=None, centroid_frac=None):
  """P1 xray.structure holding the molecule with its centroid at
  centroid_frac (random when None)."""
  from cctbx_p2a import sites
  if centroid_frac is None:
    centroid_frac = rng.uniform(0, 1, 3)
  cs = crystal.symmetry(unit_cell=unit_cell, space_group_symbol="P 1")
  return sites.structure_from_sites(sites_cart, cs, elements, u_iso=u_iso, centroid_frac=centroid_frac)


def simulated_data(xray_structure, d_min, rng, noise=0.0, completeness=1.0,
                   observation="amplitudes"):
  """Simulated observations of a structure: F,SIGF or I,SIGI (miller.array).

  Noise is Gaussian on intensities (sigma = noise*I + noise*mean(I)/20: a
  counting-statistics-like floor, so weak reflections can go negative);
  completeness drops reflections at random.
  Noise-free amplitudes get SIGF = 1% of F so that every file has sigmas.
  Structure factors by cctbx's FFT algorithm (relative error ~1e-4 here,
  far below any noise level, and 5-10x faster than the direct sum).
  """
  f_calc = xray_structure.structure_factors(d_min=d_min, algorithm="fft").f_calc()
  f = f_calc.amplitudes()
  if completeness < 1:
    keep = flex.bool(rng.uniform(size=f.size()) < completeness)
    f = f.select(keep)
  i_true = f.data() * f.data()
  if noise > 0:
    i_np = i_true.as_numpy_array()
    sig = noise * i_np + noise * i_np.mean() / 20.0
    i_obs = i_np + rng.normal(size=i_np.size) * sig
    intensities = f.customized_copy(data=flex.double(i_obs), sigmas=flex.double(sig))
  else:
    intensities = f.customized_copy(data=i_true, sigmas=0.02 * i_true + 1e-6)
  intensities.set_observation_type_xray_intensity()
  if observation == "intensities":
    return intensities
  if noise > 0:
    amplitudes = intensities.french_wilson(log=None) if hasattr(intensities, "french_wilson") \
      else intensities.f_sq_as_f()
  else:
    amplitudes = f.customized_copy(sigmas=0.01 * f.data() + 1e-6)
  amplitudes.set_observation_type_xray_amplitude()
  return amplitudes


def target_grid(sites_cart_centred, grid, sigma=0.6, inverses=True):
  """The network's target: Gaussian atoms (height 1) on `grid` (a GridSpec
  centred on 0); with inverses, (map(atoms) + map(-atoms)) / 2."""
  sites = np.asarray(sites_cart_centred, dtype=float)
  c = grid.coordinates()
  out = np.zeros((grid.n,) * 3)
  for signs in ((1.0, -1.0) if inverses else (1.0,)):
    for s in sites * signs:
      gx = np.exp(-(c - s[0]) ** 2 / (2 * sigma * sigma))
      gy = np.exp(-(c - s[1]) ** 2 / (2 * sigma * sigma))
      gz = np.exp(-(c - s[2]) ** 2 / (2 * sigma * sigma))
      out += gx[:, None, None] * gy[None, :, None] * gz[None, None, :]
  if inverses:
    out *= 0.5
  return out.astype(np.float32)


@dataclass
class Case:
  """One synthetic case: the truth, its data, and (for training) the grids."""
  seed: int
  xray_structure: object        # cctbx xray.structure in P1 (hydrogens included when present)
  sites_centred: np.ndarray     # non-H Cartesian sites relative to their centroid: the target
  f_obs: object                 # miller.array: F,SIGF or I,SIGI
  d_min: float
  noise: float
  completeness: float
  molecule: object = None       # molecules.Molecule with molecule_source=molecules

  @property
  def reference_structure(self):
    """The structure a solution is scored on: the non-H atoms."""
    if self.molecule is None:
      return self.xray_structure
    return self.xray_structure.select(flex.bool((~self.molecule.is_hydrogen).tolist()))


def molecule_structure(molecule, unit_cell, u_iso, rng, hydrogen_u_factor=1.2):
  """P1 xray.structure of a molecules.Molecule (hydrogens included), its
  non-H centroid at a random fractional position like the paper's molecules."""
  xs = place_in_cell(molecule.sites_cart, unit_cell, [str(e) for e in molecule.elements], u_iso,
                     rng=rng)
  for sc, u in zip(xs.scatterers(), molecule.u_iso(u_iso, hydrogen_u_factor)):
    sc.u_iso = float(u)
  return xs


def make_case(seed, params, d_min_floor=0.0):
  """A seeded random case from the `synthetic` PHIL scope (extracted .synthetic).

  d_min_floor: simulate no finer than this (the case still records the drawn
  d_min).  Training passes the network's input_d_min, finer reflections being
  cut before the Patterson anyway: a 60 A cell at 1 A costs ~30x more than
  at 2 A.  Only the noise floor (noise * mean(I) / 20) sees the difference."""
  rng = np.random.default_rng(seed)
  lo, hi = (list(params.n_atoms) * 2)[:2]
  molecule = None
  if getattr(params, "molecule_source", "points") in ("molecules", "store"):
    from cctbx_p2a import molecule_store
    molecule = molecule_store.case_molecule(params, int(rng.integers(2 ** 31)), (lo, hi))
    sites = molecule.non_h_sites
    unit_cell = draw_unit_cell(rng, params)
    u_iso = draw(rng, params.u_iso)
    xs = molecule_structure(molecule, unit_cell, u_iso, rng, params.hydrogen_u_factor)
  else:
    n_atoms = int(rng.integers(lo, hi + 1))
    sites = random_molecule(rng, n_atoms, params.extent, params.min_distance)
    unit_cell = draw_unit_cell(rng, params)
    elements = draw_elements(rng, params, n_atoms)
    u_iso = draw(rng, params.u_iso)
    xs = place_in_cell(sites, unit_cell, elements, u_iso, rng=rng)
  d_min = draw(rng, params.d_min)
  noise = draw(rng, params.noise)
  completeness = draw(rng, params.completeness)
  f_obs = simulated_data(xs, max(d_min, d_min_floor), rng, noise=noise, completeness=completeness,
                         observation=params.observation)
  return Case(seed=seed, xray_structure=xs, sites_centred=sites, f_obs=f_obs,
              d_min=d_min, noise=noise, completeness=completeness, molecule=molecule)


def as_amplitudes(f_obs):
  """Amplitudes for the Patterson, through the same preparation as user data."""
  from cctbx_p2a import reflections
  return reflections.prepare(f_obs, source="synthetic").f_obs


def ablation_offset(seed, max_shift=4.0):
  """The seeded random translation of the no-centring ablation."""
  return np.random.default_rng([seed, 7]).uniform(-max_shift, max_shift, 3)


def training_pair(seed, synthetic_params, patterson_params, target_params, output_grid):
  """(input grid, target grid) for one seed: the data goes through the same
  Patterson stage as a user's reflection file."""
  case = make_case(seed, synthetic_params, d_min_floor=patterson_params.input_d_min)
  x = patterson.model_input_from_params(as_amplitudes(case.f_obs), patterson_params)
  sites = case.sites_centred
  if not target_params.centre:
    # ablation: the molecule where it happens to lie (a random shift of up to
    # +-4 A), which the translation-invariant Patterson cannot tell
    sites = sites + ablation_offset(seed)
  y = target_grid(sites, output_grid, sigma=target_params.sigma,
                  inverses=target_params.inverses)
  return x, y

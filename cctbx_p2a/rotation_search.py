"""Patterson rotation search for a known molecule (the small-molecule
"Patterson search", as in ORIENT / PATSEE): its geometry known, its
orientation in the crystal not.

Why: placement.place() tries only the Laue group's orientations of an image
that is already nearly in the crystal's orientation (the oracle needs it
within about 10-15 degrees, docs/crystals_network.md section 2).  A chemist
who knows the molecule from its synthesis has the geometry but not that
orientation.  The molecule's own interatomic vectors u_ij = r_i - r_j, short
ones only (intramolecular), must fall on peaks of the observed Patterson
when the molecule is turned right, whatever its position in the cell:

    score(R) = sum_ij Z_i Z_j P(R u_ij) / sum_ij Z_i Z_j

with P the sharpened, origin-removed Patterson of the data (normalised to
unit RMS), interpolated trilinearly.  The Patterson is centrosymmetric and
has the Laue symmetry, so score(R) = score(L R) for every proper rotation L
of the Laue group, and proper rotations R suffice (place() tries the hand).

1. random unit quaternions (seeded) cover SO(3); every one is scored at
   once (numpy, in chunks);
2. the best distinct ones (modulo the Laue group) are refined locally by
   shrinking random perturbations (vectorised hill climbing);
3. for each of the top K rotations the turned image goes to
   placement.place(); the best CC placements are refined as rigid bodies,
   the best one is finished (finishing.finish) and judged (phasing.verdict)
   as placement.finish_placed does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a import placement


def atomic_number(element):
  from cctbx.eltbx import tiny_pse
  return tiny_pse.table(str(element).strip().capitalize()).atomic_number()


# -- the observed Patterson ---------------------------------------------------

@dataclass
class PattersonGrid:
  """The observed Patterson on a grid over the cell, unit RMS, with the
  cell's fractionalisation matrix (Cartesian -> fractional)."""
  values: np.ndarray
  fractionalisation: np.ndarray


def observed_patterson(f_obs, resolution_factor=0.25, coefficients="e2", per_bin=40):
  """The Patterson of the data with origin-removed, sharpened coefficients:
  E^2 - 1 ("e2"; E normalised in resolution shells of per_bin reflections,
  epsilon included) or |E||F|/<|E||F|> - 1 ("ef", less noisy at low
  resolution).  Why: the origin peak of a |F|^2 Patterson drowns the short
  intramolecular vectors at 1.5-2 A.  Grid over the cell with steps of
  resolution_factor * d_min, zero mean and unit RMS."""
  f = f_obs
  if f.anomalous_flag():
    f = f.average_bijvoet_mates()
  if f.is_xray_intensity_array():
    f = f.f_sq_as_f()
  f = f.customized_copy(sigmas=None)
  amp = np.abs(f.data().as_numpy_array())
  eps = f.epsilons().data().as_numpy_array().astype(float)
  i_over_eps = amp * amp / eps
  order = np.argsort(f.d_star_sq().data().as_numpy_array())
  mean = np.empty(len(amp))
  n_bins = max(1, len(amp) // per_bin)
  for chunk in np.array_split(order, n_bins):
    mean[chunk] = max(i_over_eps[chunk].mean(), 1e-12)
  e2 = i_over_eps / mean
  if coefficients == "e2":
    c = e2 - 1
  elif coefficients == "ef":
    ef = np.sqrt(e2) * amp
    c = ef / ef.mean() - 1
  else:
    raise Sorry("rotation search: coefficients must be e2 or ef (got %r)" % coefficients)
  from cctbx.array_family import flex
  p1 = f.customized_copy(data=flex.double(c)).expand_to_p1()
  h = np.array(p1.indices(), dtype=np.int64).reshape(-1, 3)
  data = p1.data().as_numpy_array()
  uc = f.unit_cell()
  n = np.array([max(8, int(np.ceil(length / (resolution_factor * f.d_min())))) for length in uc.parameters()[:3]])
  n += n % 2
  grid = np.zeros(n)
  np.add.at(grid, tuple((h % n).T), data)
  np.add.at(grid, tuple((-h % n).T), data)
  values = np.fft.fftn(grid).real
  values -= values.mean()
  rms = np.sqrt((values * values).mean())
  if not np.isfinite(rms) or rms == 0:
    raise Sorry("The Patterson map is flat (all amplitudes zero?): no rotation search possible.")
  frac = np.array(uc.fractionalization_matrix()).reshape(3, 3)
  return PattersonGrid(values=values / rms, fractionalisation=frac)


def interpolate(grid, frac):
  """Trilinear interpolation of the periodic grid at fractional
  coordinates frac (..., 3) (wrapped mod 1)."""
  shape = np.array(grid.shape)
  u = frac * shape
  i0 = np.floor(u).astype(np.int64)
  w = u - i0
  i0 %= shape
  i1 = (i0 + 1) % shape
  out = 0.0
  for dx, ix in ((0, i0[..., 0]), (1, i1[..., 0])):
    wx = w[..., 0] if dx else 1 - w[..., 0]
    for dy, iy in ((0, i0[..., 1]), (1, i1[..., 1])):
      wy = w[..., 1] if dy else 1 - w[..., 1]
      for dz, iz in ((0, i0[..., 2]), (1, i1[..., 2])):
        wz = w[..., 2] if dz else 1 - w[..., 2]
        out = out + wx * wy * wz * grid[ix, iy, iz]
  return out


# -- the model's vectors ------------------------------------------------------

def model_vectors(image, min_length=1.0, max_length=9.0):
  """The image's interatomic vectors (one of each +-u pair: the Patterson is
  centrosymmetric) with min_length < |u| < max_length A, weighted Z_i Z_j;
  hydrogens left out.  Returns (vectors (V, 3), weights (V,))."""
  keep = [i for i, e in enumerate(image.elements) if e.upper() not in ("H", "D")]
  sites = image.sites_cart[keep]
  z = np.array([atomic_number(image.elements[i]) for i in keep], dtype=float)
  i, j = np.triu_indices(len(sites), k=1)
  u = sites[i] - sites[j]
  length = np.linalg.norm(u, axis=1)
  sel = (length > min_length) & (length < max_length)
  if not sel.any():
    raise Sorry("The molecule has no interatomic vectors between %.1f and %.1f A: nothing to search with. "
                "Lower placement.rotation_shortest_vector (or leave it None)."
                % (min_length, max_length))
  return u[sel], (z[i] * z[j])[sel]


# -- rotations ----------------------------------------------------------------

def random_rotations(n, seed=0):
  """n rotation matrices uniform over SO(3) (random unit quaternions)."""
  rng = np.random.default_rng([int(seed), 57])
  q = rng.normal(size=(n, 4))
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  return quaternion_matrices(q)


def quaternion_matrices(q):
  w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
  return np.stack([
    np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
    np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
    np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1)], axis=1)


def small_rotations(n, degrees, rng):
  """n rotations about random axes by angles drawn up to `degrees`."""
  axes = rng.normal(size=(n, 3))
  axes /= np.linalg.norm(axes, axis=1, keepdims=True)
  angles = np.radians(degrees) * rng.uniform(0, 1, size=(n, 1))
  half = angles / 2
  return quaternion_matrices(np.hstack([np.cos(half), axes * np.sin(half)]))


def rotation_angle(r):
  """Rotation angle (degrees) of a proper rotation matrix."""
  return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def proper_laue(crystal_symmetry):
  """The Laue group's Cartesian operations as proper rotations (an improper
  L acts on the centrosymmetric Patterson as -L)."""
  out = []
  for l in placement.laue_rotations(crystal_symmetry):
    p = l if np.linalg.det(l) > 0 else -l
    if not any(np.allclose(p, q, atol=1e-6) for q in out):
      out.append(p)
  return out


def angle_modulo_laue(r_a, r_b, laue):
  """The smallest angle (degrees) between r_a and L r_b over the proper
  Laue rotations L (and the hand: -r for an improper r)."""
  best = 180.0
  for l in laue:
    m = l @ r_b @ r_a.T
    if np.linalg.det(m) < 0:
      m = -m
    best = min(best, rotation_angle(m))
  return best


# -- the search ---------------------------------------------------------------

def scores(patterson, rotations, vectors, weights, chunk=1024):
  """score(R) for every rotation (M, 3, 3): the weighted mean Patterson
  height at the turned vectors."""
  out = np.empty(len(rotations))
  total = weights.sum()
  for start in range(0, len(rotations), chunk):
    a = np.einsum("ij,mjk->mik", patterson.fractionalisation, rotations[start:start + chunk])
    frac = np.einsum("mik,vk->mvi", a, vectors)
    out[start:start + chunk] = interpolate(patterson.values, frac) @ weights / total
  return out


@dataclass
class RotationHit:
  rotation: np.ndarray    # applied to the image: sites_cart @ rotation.T
  score: float
  z_score: float          # (score - mean) / sd over the random samples


@dataclass
class RotationSearch:
  hits: list
  n_samples: int
  n_vectors: int
  seconds: float
  laue: list = field(default_factory=list)


def search(f_obs, image, n_samples=20000, n_refine=30, n_keep=10, distinct_degrees=15.0,
           min_length=1.0, max_length=9.0, seed=0, resolution_factor=0.25, coefficients="e2"):
  """The Patterson rotation search: the n_keep best distinct (modulo the
  Laue group) rotations of the image, best score first."""
  t0 = time.time()
  cs = f_obs.crystal_symmetry()
  laue = proper_laue(cs)
  pat = observed_patterson(f_obs, resolution_factor=resolution_factor, coefficients=coefficients)
  vectors, weights = model_vectors(image, min_length, max_length)
  rotations = random_rotations(n_samples, seed)
  s = scores(pat, rotations, vectors, weights)
  mean, sd = s.mean(), s.std() or 1.0
  starts = distinct(rotations, s, laue, n_refine, distinct_degrees)
  rng = np.random.default_rng([int(seed), 58])
  refined = []
  for r, score in starts:
    for step in (8.0, 4.0, 2.0, 1.0):
      trial = np.concatenate([r[None], np.einsum("mij,jk->mik", small_rotations(48, step, rng), r)])
      ts = scores(pat, trial, vectors, weights)
      k = int(np.argmax(ts))
      r, score = trial[k], float(ts[k])
    refined.append((r, score))
  rots = np.array([r for r, _ in refined])
  kept = distinct(rots, np.array([sc for _, sc in refined]), laue, n_keep, distinct_degrees)
  hits = [RotationHit(rotation=r, score=float(sc), z_score=float((sc - mean) / sd)) for r, sc in kept]
  return RotationSearch(hits=hits, n_samples=n_samples, n_vectors=len(vectors),
                        seconds=time.time() - t0, laue=laue)


def distinct(rotations, values, laue, n, degrees):
  """The n highest-valued rotations that are more than `degrees` apart
  modulo the Laue group, as (rotation, value)."""
  kept = []
  for k in np.argsort(-values):
    r = rotations[k]
    if all(angle_modulo_laue(r, q, laue) > degrees for q, _ in kept):
      kept.append((r, float(values[k])))
      if len(kept) == n:
        break
  return kept


# -- placement and finishing --------------------------------------------------

@dataclass
class KnownMoleculeSolution:
  """The rotation search, the placement that won, and the finished model."""
  rotation_search: RotationSearch
  placement: placement.Placement     # of the winning rotation
  rotation_rank: int                  # which hit (0: the best Patterson score) won the CC
  rotation: np.ndarray                # the full rotation applied to the input image (Laue op included,
                                      # rigid body after)
  start: placement.Candidate          # after rigid-body refinement
  top: placement.Candidate            # the best CC over all rotations, before rigid-body refinement
  finished: object
  explained: bool
  reasons: list
  seconds: float
  notes: list = field(default_factory=list)


@dataclass
class BestPlacement:
  """The winning rigid placement of a known molecule, before finishing."""
  rotation_search: RotationSearch
  placement: placement.Placement     # of the winning rotation
  rotation_rank: int                  # which hit (0: the best Patterson score) won the CC
  rotation: np.ndarray                # the full rotation applied to the image
  start: placement.Candidate          # after rigid-body refinement
  top: placement.Candidate            # the best CC over all rotations, before rigid-body refinement
  notes: list
  shortest_vector: float = 1.0        # the shortest model vector the rotation search scored (A)


MIN_SEARCH_VECTORS = 3


def shortest_vector(f_obs, params, image=None, max_length=9.0):
  """The shortest model vector the rotation search scores (A):
  placement.rotation_shortest_vector, or 0.9 d_min and at least 1.0 A.  Why:
  a vector much shorter than d_min sits on the shoulder of the removed
  origin peak and biases the orientation.  A small molecule (ethylene oxide
  at 2.0 A) may have fewer than MIN_SEARCH_VECTORS vectors that long: then
  its bond vectors (from 1.0 A) are scored, biased but not nothing."""
  given = params.placement.rotation_shortest_vector
  if given is not None:
    return float(given)
  automatic = max(1.0, 0.9 * f_obs.d_min())
  if image is not None and automatic > 1.0:
    heavy = np.array([e.upper() not in ("H", "D") for e in image.elements])
    sites = image.sites_cart[heavy]
    i, j = np.triu_indices(len(sites), k=1)
    length = np.linalg.norm(sites[i] - sites[j], axis=1)
    if np.count_nonzero((length > automatic) & (length < max_length)) < MIN_SEARCH_VECTORS:
      return 1.0
  return automatic


def best_placement(f_obs, image, params=None, n_rotations=None, n_rigid=None, seed=0, **search_kwargs):
  """Rotation search -> placement.place() for each of the n_rotations best
  rotations -> the n_rigid best-CC placements refined as rigid bodies (with
  placement.rigid_body) -> the best CC.  n_rotations, n_rigid: None for
  placement.rotations_tried, rigid_tried.  Returns a BestPlacement."""
  from cctbx_p2a import finishing
  params = params or placement.default_params()
  n_rotations = n_rotations or params.placement.rotations_tried
  n_rigid = n_rigid or params.placement.rigid_tried
  cs = f_obs.crystal_symmetry()
  search_kwargs.setdefault("min_length", shortest_vector(f_obs, params, image,
                                                         search_kwargs.get("max_length", 9.0)))
  found = search(f_obs, image, seed=seed, n_keep=n_rotations, **search_kwargs)
  laue_all = placement.laue_rotations(cs)
  pool = []
  placements = []
  for rank, hit in enumerate(found.hits):
    turned = placement.MoleculeImage.of(image.sites_cart @ hit.rotation.T, image.elements)
    placed = placement.place(f_obs, turned, params)
    placements.append(placed)
    for c in placed.candidates[:2]:
      pool.append((c.cc, rank, c, turned))
  pool.sort(key=lambda p: -p[0])
  best = None
  notes = []
  for cc, rank, c, turned in pool[:max(1, n_rigid)]:
    rotation = laue_all[c.orientation]
    candidate, turn = c, rotation
    if params.placement.rigid_body:
      t_turn, t, u, rcc = placement.rigid_body_refine(f_obs, turned, rotation, c.translation,
                                                      params.placement.u_iso)
      if rcc > c.cc:
        xs = placement.placed_structure(turned, t_turn, t, cs, u)
        r1 = finishing.r1_and_cc(f_obs, xs)[0]
        candidate = placement.Candidate(orientation=c.orientation, peak_rank=c.peak_rank, translation=tuple(t),
                                        tf_height=c.tf_height, cc=rcc, r1=r1, xray_structure=xs)
        turn = t_turn
    notes.append("rotation %d (Patterson z %.1f): CC %.3f -> %.3f" % (rank, found.hits[rank].z_score, cc,
                                                                     candidate.cc))
    if best is None or candidate.cc > best[0].cc:
      best = (candidate, rank, turn @ found.hits[rank].rotation)
  candidate, rank, full_rotation = best
  chosen = placements[rank]
  chosen.rigid = candidate
  return BestPlacement(rotation_search=found, placement=chosen, rotation_rank=rank, rotation=full_rotation,
                       start=candidate, top=pool[0][2], notes=notes,
                       shortest_vector=float(search_kwargs["min_length"]))


def place_known_molecule(f_obs, image, composition=None, params=None, n_rotations=None, n_rigid=None,
                         seed=0, **search_kwargs):
  """best_placement(), then the common finishing and the verdict, as
  placement.finish_placed (what benchmarks/known_molecule.py measures)."""
  from cctbx_p2a import finishing, phasing, restraints
  params = params or placement.default_params()
  t0 = time.time()
  best = best_placement(f_obs, image, params, n_rotations=n_rotations, n_rigid=n_rigid, seed=seed,
                        **search_kwargs)
  found, chosen, rank, full_rotation, candidate = (best.rotation_search, best.placement, best.rotation_rank,
                                                   best.rotation, best.start)
  notes = best.notes
  if composition is None:
    from cctbx_p2a import known_molecule
    composition = known_molecule.composition_of(image)
  n_sites = int(sum(finishing.composition_sites(composition).values()))
  start = candidate.xray_structure.deep_copy_scatterers()
  finished = finishing.finish(start, f_obs, params, n_sites, composition=composition, keep_elements=True,
                              restraints=restraints.for_known_molecule(start, params))
  chemistry = params.success.chemistry_check in ("auto", "True")
  rigid = phasing.rigid_fit((candidate.xray_structure, candidate.cc), finished.xray_structure)
  explained, reasons = phasing.verdict(finished.xray_structure, finished.r1, finished.cc, f_obs, params,
                                       chemistry=chemistry, elements_known=bool(composition),
                                       n_expected=n_sites, rigid=rigid)
  return KnownMoleculeSolution(rotation_search=found, placement=chosen, rotation_rank=rank,
                               rotation=full_rotation, start=candidate, top=best.top, finished=finished,
                               explained=explained, reasons=reasons, seconds=time.time() - t0, notes=notes)

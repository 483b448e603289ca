"""Read-out for crystals (route a): a molecule image -> the molecule placed in the cell.

Why: a network that maps the Patterson to the molecule centred on its
centroid cannot know the molecule's position in the cell (the Patterson does
not see it), nor which of the Laue group's orientations is the one in the
crystal (the Patterson has the Laue symmetry: the symmetry copies and the
hand look alike to it).  Both are decided here against |F_obs|, as in
molecular replacement:

1. every orientation of the image under the Laue group (Cartesian rotations
   of the space group's point operations, with the inversion: the hand);
2. for each, the fast translation function (cctbx.translation_search.
   fast_nv1995, Navaza & Vernoslova 1995) in the data's space group, and its
   highest few peaks;
3. each orientation + translation scored by CC(|F_obs|, |F_calc|) of the
   placed molecule with all its symmetry copies; the best is the start.

Nothing here knows how a network was trained: the input is a set of
Cartesian sites (A, centred or not) with elements, the output an
xray.structure in the data's space group.  finish_placed() then hands the
start to the common finishing (cctbx_p2a.finishing.finish) and the verdict of
p2a.solve (phasing.verdict).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from libtbx.utils import Sorry


@dataclass
class MoleculeImage:
  """A molecule as a route-(a) network would deliver it: Cartesian sites (n,
  3) in the crystal's orthogonal frame (cctbx orthogonalisation), centred on
  their centroid, with elements."""
  sites_cart: np.ndarray
  elements: list

  @classmethod
  def of(cls, sites_cart, elements):
    sites = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
    if len(sites) == 0 or len(elements) != len(sites):
      raise Sorry("A molecule image needs at least one site and one element per site (got %d sites, "
                  "%d elements)." % (len(sites), len(elements)))
    return cls(sites_cart=sites - sites.mean(axis=0), elements=[str(e) for e in elements])


def image_of_structure(xray_structure):
  """The non-H atoms of a structure's asymmetric unit as a centred image in
  its true orientation (the oracle: what a perfect network would draw)."""
  orth = orthogonalisation(xray_structure.unit_cell())
  keep = [i for i, sc in enumerate(xray_structure.scatterers()) if sc.scattering_type not in ("H", "D")]
  frac = np.array(xray_structure.sites_frac())[keep]
  elements = [xray_structure.scatterers()[i].scattering_type for i in keep]
  return MoleculeImage.of(frac @ orth.T, elements)


def image_from_atom_map(atom_map, voxel, n_sites, threshold=0.1):
  """A crystal network's map (cctbx_p2a.crystal_data: one copy of the
  molecule, centred) read as an image: its n_sites highest peaks, all carbon
  (the map draws every atom alike; the composition retypes them in the
  finishing), or None when no peak stands above threshold."""
  from cctbx_p2a import sites
  peaks, _ = sites.find_peaks(atom_map, voxel, threshold=threshold, max_peaks=n_sites)
  if len(peaks) == 0:
    return None
  return MoleculeImage.of(peaks, ["C"] * len(peaks))


def rotation_about(axis, degrees):
  axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
  a = np.radians(degrees)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def perturbed(image, rotation_degrees=0.0, coordinate_rms=0.0, seed=0):
  """The image turned by rotation_degrees about a random axis through its
  centroid, then every site moved by isotropic Gaussian noise of 3D RMS
  coordinate_rms (A): what an imperfect network might deliver."""
  rng = np.random.default_rng([int(seed), 31])
  sites = image.sites_cart @ rotation_about(rng.normal(size=3), rotation_degrees).T
  if coordinate_rms > 0:
    sites = sites + rng.normal(scale=coordinate_rms / np.sqrt(3), size=sites.shape)
  return MoleculeImage.of(sites, image.elements)


def orthogonalisation(unit_cell):
  return np.array(unit_cell.orthogonalization_matrix()).reshape(3, 3)


def laue_rotations(crystal_symmetry):
  """Cartesian matrices of the Laue group of the data's space group (its
  point rotations and their products with the inversion), identity first."""
  orth = orthogonalisation(crystal_symmetry.unit_cell())
  frac = np.linalg.inv(orth)
  laue = crystal_symmetry.space_group().build_derived_laue_group()
  rotations = []
  for op in laue:
    r = orth @ np.array(op.r().as_double()).reshape(3, 3) @ frac
    if not any(np.allclose(r, q, atol=1e-6) for q in rotations):
      rotations.append(r)
  rotations.sort(key=lambda r: not np.allclose(r, np.eye(3), atol=1e-6))
  return rotations


def turned_sites_frac(image, rotation, orth):
  """Fractional sites of the image turned by rotation about its centred
  origin (orth: the cell's orthogonalisation matrix)."""
  return np.linalg.solve(orth, (image.sites_cart @ rotation.T).T).T


def model_in_p1(image, rotation, crystal_symmetry, u_iso=0.03):
  """The rotated image as one molecule in a P1 cell like the data's (sites
  still centred on the origin): the search model of the translation function."""
  from cctbx import crystal, sgtbx, xray
  from cctbx.array_family import flex
  frac = turned_sites_frac(image, rotation, orthogonalisation(crystal_symmetry.unit_cell()))
  p1 = crystal.symmetry(unit_cell=crystal_symmetry.unit_cell(), space_group_info=sgtbx.space_group_info("P 1"))
  scatterers = flex.xray_scatterer()
  for i, (e, s) in enumerate(zip(image.elements, frac)):
    scatterers.append(xray.scatterer(label="%s%d" % (e, i + 1), site=tuple(s), u=u_iso, scattering_type=e))
  return xray.structure(crystal_symmetry=p1, scatterers=scatterers)


def translation_function(f_obs, model, resolution_factor=1 / 3., partial=None):
  """The fast translation function (Navaza & Vernoslova 1995) of a P1 model
  against |F_obs| in the data's space group, as a numpy grid over the cell.
  partial: an xray.structure already placed (another copy of the molecule,
  Z' > 1), whose F_calc is added to the model's at every translation."""
  from cctbx import miller, translation_search
  from cctbx.array_family import flex
  f_obs = f_obs.as_non_anomalous_array().merge_equivalents().array() if f_obs.anomalous_flag() else f_obs
  p1_set = miller.build_set(crystal_symmetry=model.crystal_symmetry(), anomalous_flag=False,
                            d_min=f_obs.d_min())
  f_calc = p1_set.structure_factors_from_scatterers(model, algorithm="direct").f_calc()
  f_part = flex.complex_double()
  if partial is not None:
    f_part = f_obs.structure_factors_from_scatterers(partial, algorithm="direct").f_calc().data()
  gridding = f_obs.crystal_gridding(
    symmetry_flags=translation_search.symmetry_flags(is_isotropic_search_model=False,
                                                     have_f_part=partial is not None),
    resolution_factor=resolution_factor)
  target = translation_search.fast_nv1995(
    gridding=gridding.n_real(), space_group=f_obs.space_group(), anomalous_flag=False,
    miller_indices_f_obs=f_obs.indices(), f_obs=f_obs.data(), f_part=f_part,
    miller_indices_p1_f_calc=f_calc.indices(), p1_f_calc=f_calc.data()).target_map()
  return target.as_numpy_array().reshape(gridding.n_real())


def grid_peaks(values, n_peaks):
  """The n_peaks highest local maxima of a periodic grid, as fractional
  coordinates (refined by a parabola through the neighbours on each axis)
  with their heights, highest first."""
  is_max = np.ones(values.shape, dtype=bool)
  for shift in [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)]:
    is_max &= values >= np.roll(values, shift, axis=(0, 1, 2))
  idx = np.argwhere(is_max)
  heights = values[is_max]
  order = np.argsort(-heights)[:n_peaks]
  n = np.array(values.shape)
  peaks = []
  for i in order:
    g = idx[i]
    offset = np.zeros(3)
    for axis in range(3):
      lo, hi = g.copy(), g.copy()
      lo[axis] = (g[axis] - 1) % n[axis]
      hi[axis] = (g[axis] + 1) % n[axis]
      ym, y0, yp = values[tuple(lo)], values[tuple(g)], values[tuple(hi)]
      curvature = ym - 2 * y0 + yp
      if curvature < 0:
        offset[axis] = 0.5 * (ym - yp) / curvature
    peaks.append(((g + offset) / n, float(heights[i])))
  return peaks


def placed_structure(image, rotation, translation_frac, crystal_symmetry, u_iso=0.03):
  """The rotated image with its centroid moved to translation_frac, as the
  asymmetric unit of a structure in the data's space group."""
  from cctbx import xray
  model = model_in_p1(image, rotation, crystal_symmetry, u_iso)
  shifted = model.apply_shift(tuple(translation_frac))
  return xray.structure(crystal_symmetry=crystal_symmetry, scatterers=shifted.scatterers())


@dataclass
class Candidate:
  """One orientation (index into laue_rotations) and translation peak."""
  orientation: int
  peak_rank: int
  translation: tuple
  tf_height: float
  cc: float
  r1: float
  xray_structure: object = None


@dataclass
class Placement:
  """The candidates of one image against one data set, best CC first."""
  candidates: list
  n_orientations: int
  seconds: float
  notes: list = field(default_factory=list)
  rigid: object = None     # the best candidate after rigid-body refinement (finish_placed)

  @property
  def best(self):
    return self.candidates[0]


def default_params():
  from cctbx_p2a import phasing, phil
  return phil.extract(*phasing.SOLVE_SCOPES)


OVERSAMPLED_PEAKS = 8   # translation peaks looked at per distinct one wanted: the permissible
                        # origins repeat every solution up to 8 times (P-1, P2_1/c, ...)


def place(f_obs, image, params=None):
  """Every Laue orientation of the image x the best translation peaks,
  scored by CC(|F_obs|, |F_calc|).  Returns a Placement."""
  from cctbx_p2a import finishing
  pp = (params or default_params()).placement
  if f_obs.is_xray_intensity_array():
    raise Sorry("placement needs amplitudes: give F_obs (reflections.read gives them).")
  t0 = time.time()
  cs = f_obs.crystal_symmetry()
  f_search = f_obs.resolution_filter(d_max=pp.d_max) if pp.d_max else f_obs
  rotations = laue_rotations(cs)
  candidates = []
  for k, rotation in enumerate(rotations):
    model = model_in_p1(image, rotation, cs, pp.u_iso)
    tf = translation_function(f_search, model, resolution_factor=pp.resolution_factor)
    taken = []
    for t, height in grid_peaks(tf, pp.n_peaks * OVERSAMPLED_PEAKS):
      if len(taken) == pp.n_peaks:
        break
      xs = placed_structure(image, rotation, t, cs, pp.u_iso)
      r1, cc, _ = finishing.r1_and_cc(f_obs, xs)
      if any(abs(cc - c.cc) < 1e-6 and abs(r1 - c.r1) < 1e-6 for c in taken):
        continue  # the same structure from another permissible origin
      taken.append(Candidate(orientation=k, peak_rank=len(taken), translation=tuple(t), tf_height=height,
                             cc=cc, r1=r1, xray_structure=xs))
    candidates += taken
  candidates.sort(key=lambda c: -c.cc)
  return Placement(candidates=candidates, n_orientations=len(rotations), seconds=time.time() - t0)


class RigidAmplitudes:
  """|F_calc| of one image at the reflections of f_obs, in numpy: the
  form factors (cctbx's own, from the structure's scattering-type registry)
  and the space group's operators are fixed, only the sites and one U_iso
  change.  Why: the rigid body's Nelder-Mead asks for hundreds of |F_calc|,
  and building an xray.structure for each took most of a known-molecule
  solve; this gives the same numbers (test_placement) without it."""

  def __init__(self, f_obs, elements):
    from cctbx.array_family import flex
    cs = f_obs.crystal_symmetry()
    self.h = np.array(f_obs.indices(), dtype=float)
    ops = f_obs.space_group().all_ops()
    self.r = np.array([np.array(op.r().as_double()).reshape(3, 3) for op in ops])
    self.t = np.array([op.t().as_double() for op in ops])
    self.d_star_sq = f_obs.d_star_sq().data().as_numpy_array()
    template = placed_structure(MoleculeImage.of(np.zeros((len(elements), 3)), list(elements)), np.eye(3),
                                (0, 0, 0), cs)
    registry = template.scattering_type_registry()
    d_star_sq = flex.double(self.d_star_sq)
    types = dict(zip(elements, template.scatterers().extract_scattering_types()))
    form = {e: registry.gaussian_not_optional(t).at_d_star_sq(d_star_sq).as_numpy_array() for e, t in types.items()}
    self.form = np.stack([form[e] for e in elements], axis=1)                  # (reflections, atoms)
    self.orth = orthogonalisation(cs.unit_cell())

  def __call__(self, sites_frac, u_iso, f_part=None):
    """|F_calc| for the atoms at sites_frac (atoms, 3), all with u_iso, plus
    f_part (complex, at f_obs's reflections: copies already placed) if given."""
    f = self.complex(sites_frac, u_iso)
    return np.abs(f if f_part is None else f + f_part)

  def complex(self, sites_frac, u_iso):
    """F_calc (complex) for the atoms at sites_frac, all with u_iso."""
    sym = np.einsum("sab,jb->sja", self.r, sites_frac) + self.t[:, None, :]   # (ops, atoms, 3)
    f = np.zeros(len(self.h), dtype=complex)
    step = max(1, int(4e6 // max(1, sym.shape[0] * sym.shape[1])))
    for a in range(0, len(self.h), step):
      phase = 2 * np.pi * np.einsum("na,sja->nsj", self.h[a:a + step], sym)
      f[a:a + step] = (self.form[a:a + step, None, :] * np.exp(1j * phase)).sum(axis=(1, 2))
    return f * np.exp(-2 * np.pi ** 2 * u_iso * self.d_star_sq)

  def placed(self, image, rotation, translation_frac):
    """Fractional sites of the image turned by rotation (about its centred
    origin) with its centroid at translation_frac, as placed_structure."""
    return turned_sites_frac(image, rotation, self.orth) + np.asarray(translation_frac)


def rigid_body_refine(f_obs, image, rotation, translation_frac, u_iso=0.03, max_evaluations=400, f_part=None):
  """Turn and shift the placed image as one rigid body (about its centroid),
  with one overall U_iso, to maximise CC(|F_obs|, |F_calc|): 7 parameters,
  which even 2 A data (about 100 reflections) determine well, whereas
  refining every atom at 2 A can take a right start away (measured,
  docs/crystals_network.md).  f_part: complex F_calc of copies already
  placed (held fixed).  Returns (rotation, translation_frac, u_iso, CC)."""
  from scipy.optimize import minimize
  cs = f_obs.crystal_symmetry()
  orth = orthogonalisation(cs.unit_cell())
  fo = f_obs.data().as_numpy_array()

  def state(x):
    turn = rotation_matrix(x[:3]) @ rotation
    t = np.asarray(translation_frac) + np.linalg.solve(orth, x[3:6])
    return turn, t, float(np.clip(u_iso * np.exp(x[6]), 0.002, 0.3))

  amplitudes = RigidAmplitudes(f_obs, image.elements)

  def minus_cc(x):
    turn, t, u = state(x)
    fc = amplitudes(amplitudes.placed(image, turn, t), u, f_part)
    return -float(np.corrcoef(fo, fc)[0, 1])

  x0 = np.zeros(7)
  simplex = np.vstack([x0] + [x0 + step for step in np.diag([0.05] * 3 + [0.3] * 3 + [0.3])])
  result = minimize(minus_cc, x0, method="Nelder-Mead",
                    options=dict(maxfev=max_evaluations, initial_simplex=simplex, xatol=1e-3, fatol=1e-5))
  turn, t, u = state(result.x)
  return turn, t, u, -float(result.fun)


def rotation_matrix(rotation_vector):
  """Rotation by |v| radians about v (Rodrigues)."""
  v = np.asarray(rotation_vector, dtype=float)
  a = np.linalg.norm(v)
  if a < 1e-12:
    return np.eye(3)
  return rotation_about(v, np.degrees(a))


@dataclass
class PlacedSolution:
  """A placed image after the common finishing, with p2a's verdict."""
  placement: Placement
  finished: object
  explained: bool
  reasons: list
  seconds: float


def place_rigid(f_obs, image, params):
  """place() -> its best start, refined as a rigid body when
  placement.rigid_body (kept only when CC rises).  Returns the Placement,
  with .rigid set to that start (a Candidate)."""
  from cctbx_p2a import finishing
  placement = place(f_obs, image, params)
  best = placement.best
  if params.placement.rigid_body:
    rotation = laue_rotations(f_obs.crystal_symmetry())[best.orientation]
    turn, t, u, cc = rigid_body_refine(f_obs, image, rotation, best.translation, params.placement.u_iso)
    if cc > best.cc:
      xs = placed_structure(image, turn, t, f_obs.crystal_symmetry(), u)
      r1 = finishing.r1_and_cc(f_obs, xs)[0]
      placement.notes.append("rigid body: CC %.3f -> %.3f" % (best.cc, cc))
      best = Candidate(orientation=best.orientation, peak_rank=best.peak_rank, translation=tuple(t),
                       tf_height=best.tf_height, cc=cc, r1=r1, xray_structure=xs)
  placement.rigid = best
  return placement


def finish_placed(f_obs, image, composition=None, params=None):
  """place() -> the best start -> rigid-body refinement (placement.rigid_body)
  -> finishing.finish (the composition, when
  given, fixes the atom count and the elements) -> phasing.verdict.
  Without a composition the image's own atoms and elements are the count."""
  from cctbx_p2a import finishing, phasing
  params = params or default_params()
  t0 = time.time()
  placement = place_rigid(f_obs, image, params)
  if composition is None:
    composition = {}
    for e in image.elements:
      composition[e] = composition.get(e, 0) + 1
  n_sites = int(sum(finishing.composition_sites(composition).values()))
  start = placement.rigid.xray_structure.deep_copy_scatterers()
  finished = finishing.finish(start, f_obs, params, n_sites, composition=composition)
  chemistry = params.success.chemistry_check in ("auto", "True")   # molecules have bonds
  explained, reasons = phasing.verdict(finished.xray_structure, finished.r1, finished.cc, f_obs, params,
                                       chemistry=chemistry, elements_known=bool(composition),
                                       n_expected=n_sites)   # as p2a.solve judges: every atom placed
  return PlacedSolution(placement=placement, finished=finished, explained=explained, reasons=reasons,
                        seconds=time.time() - t0)

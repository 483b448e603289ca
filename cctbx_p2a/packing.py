"""Packed molecular crystals for training: real molecules in common space groups.

Why: a network trained on one molecule alone in a large P1 cell has only ever
seen empty space around it.  Measured crystals are packed tightly (about 18
A^3 per non-H atom, Kempster & Lipson), in a handful of space groups.  This
module makes such crystals from the real molecules of
:mod:`cctbx_p2a.molecules`, packed by PyXtal (Fredericks et al., Comput. Phys.
Commun. 2021) by symmetry:

* one molecule in the general position (Z' = 1) of P-1, P2_1/c, C2/c,
  P2_12_12_1, P2_1, Pbca or Pna2_1 (the space groups of most published
  small-molecule structures);
* PyXtal packs at a loose density, where its random placement is fast
  (PyXtal makes the cell ``factor`` x Z x its estimate of the molecule's
  volume, so the factor for a volume per non-H atom is computed); at real
  densities PyXtal alone is slow and leaves clashes (measured, see pack());
* the packing is then squeezed to the wanted density: the cell shrinks in
  steps, and after each Monte Carlo moves of the cell shape and of the rigid
  molecule's orientation and position remove every contact closer than its
  bound (the conformer is RDKit's, unchanged);
* every crystal is checked afterwards with cctbx pair tables: closest
  intermolecular contacts between non-H atoms and between a hydrogen and any
  atom (symmetry copies included); a crystal with a clash is redrawn.

The result is a cctbx ``xray.structure`` of the asymmetric unit (hydrogens
included, flagged by ``is_hydrogen``) in the space group, in the most nearly
orthogonal cell of the same space-group type (P2_1/c may become P2_1/n, as in
the CSD), plus the route-(a) network target: the molecule's Cartesian image
centred on the centroid of its non-H atoms, in the crystal's orthogonal frame
(cctbx's orthogonalisation).

PyXtal (with pymatgen, ase, spglib) is a training extra (``pip install -e
.[train]``), imported only here, never by ``p2a.solve``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from libtbx.utils import Sorry

# space group -> ITA number (PyXtal's standard settings)
SPACE_GROUPS = {"P-1": 2, "P21/c": 14, "C2/c": 15, "P212121": 19, "P21": 4, "Pbca": 61, "Pna21": 33}


@dataclass
class PackedCrystal:
  """One packed crystal, Z' = 1.

  xray_structure: the asymmetric unit (the whole molecule, H included) in the
  space group.  is_hydrogen: flags of its scatterers.  image_sites_cart: the
  molecule's sites (same order) in the crystal's orthogonal frame, centred on
  the centroid of the non-H atoms -- the route-(a) target.  centroid_frac:
  where that centroid sits in the cell."""
  xray_structure: object
  is_hydrogen: np.ndarray
  image_sites_cart: np.ndarray
  centroid_frac: np.ndarray
  molecule: object
  space_group: str
  volume_per_non_h: float
  closest_contact_non_h: float
  closest_contact_h: float
  squeeze_steps: int
  seed: int
  tries: int
  seconds: float
  notes: list = field(default_factory=list)

  @property
  def non_h_structure(self):
    """The non-H atoms of the asymmetric unit (what a solution is scored on)."""
    from cctbx.array_family import flex
    return self.xray_structure.select(flex.bool((~self.is_hydrogen).tolist()))


def pyxtal_modules():
  """(pyxtal class, pyxtal_molecule, pymatgen Molecule), or a Sorry saying how to install."""
  try:
    from pymatgen.core import Molecule as PymatgenMolecule
    from pyxtal import pyxtal
    from pyxtal.molecule import pyxtal_molecule
  except ImportError:
    raise Sorry("Packed crystals need PyXtal, a training extra: pip install -e .[train] "
                "(or pip install pyxtal).")
  return pyxtal, pyxtal_molecule, PymatgenMolecule


def space_group_number(space_group):
  """ITA number of a space group: a key of SPACE_GROUPS (the training
  groups) or any symbol cctbx reads (other groups serve benchmarks of the
  crystal route, e.g. benchmarks/space_groups.py)."""
  if space_group in SPACE_GROUPS:
    return SPACE_GROUPS[space_group]
  from cctbx import sgtbx
  try:
    return sgtbx.space_group_info(symbol=space_group).type().number()
  except RuntimeError:
    raise Sorry("Unknown space group %r for packing: give a symbol cctbx reads (e.g. %s)." % (
      space_group, ", ".join(SPACE_GROUPS)))


def hall_symbol(hall_number):
  """Hall symbol of spglib's Hall number (PyXtal's setting), for cctbx."""
  import spglib
  return spglib.get_spacegroup_type(int(hall_number)).hall_symbol


def intermolecular_contacts(xray_structure, is_hydrogen, cutoff=4.0):
  """Closest intermolecular distances (A): (non-H to non-H, any pair with a
  hydrogen).  With Z' = 1 every atom of the asymmetric unit belongs to one
  molecule, so a pair is intermolecular exactly when a symmetry operation
  other than the identity (lattice translations included) relates it.
  Distances beyond cutoff are reported as cutoff."""
  from cctbx_p2a.finishing import symmetry_pairs
  heavy, with_h = cutoff, cutoff
  for i, j, op, d in symmetry_pairs(xray_structure, cutoff):
    if op.is_unit_mx():
      continue
    if is_hydrogen[i] or is_hydrogen[j]:
      with_h = min(with_h, d)
    else:
      heavy = min(heavy, d)
  return heavy, with_h


def structure_in_best_cell(symmetry, molecule, sites_frac, u_iso):
  """The molecule (fractional sites, H included) as a cctbx structure in
  `symmetry`, moved into the most nearly orthogonal cell of the same space
  group type (the Niggli cell for P-1)."""
  from cctbx import xray
  from cctbx.array_family import flex
  scatterers = flex.xray_scatterer()
  counts = {}
  for e, site, u in zip(molecule.elements, sites_frac, molecule.u_iso(u_iso)):
    e = str(e)
    counts[e] = counts.get(e, 0) + 1
    scatterers.append(xray.scatterer(label="%s%d" % (e, counts[e]), site=tuple(site), u=float(u),
                                     scattering_type=e))
  xs = xray.structure(crystal_symmetry=symmetry, scatterers=scatterers)
  if xs.space_group().n_smx() == 1:
    to_best = xs.change_of_basis_op_to_niggli_cell()
  else:
    to_best = xs.change_of_basis_op_to_best_cell()
  return xs if to_best.is_identity_op() else xs.change_basis(to_best)


def pyxtal_molecule_of(molecule, rng):
  """PyXtal's view of the molecule (its symmetry analysed by pymatgen: about
  0.2 s, so made once per molecule, not once per packing attempt)."""
  _, pyxtal_molecule, PymatgenMolecule = pyxtal_modules()
  return pyxtal_molecule(PymatgenMolecule([str(e) for e in molecule.elements], molecule.sites_cart),
                         fix=True, random_state=np.random.default_rng(int(rng.integers(2 ** 31))))


def pyxtal_start(molecule, number, volume_per_non_h, rng, max_tries, pymolecule=None):
  """PyXtal's packing of the molecule in the general position at a loose
  density (fast, and free of gross overlaps): (cctbx symmetry, fractional
  sites of the first copy, whole), or a Sorry."""
  from cctbx import crystal as cctbx_crystal, sgtbx
  pyxtal, _, _ = pyxtal_modules()
  from pyxtal.symmetry import Group
  if pymolecule is None:
    pymolecule = pyxtal_molecule_of(molecule, rng)
  factor = volume_per_non_h * molecule.n_atoms / pymolecule.volume
  z = Group(number)[0].multiplicity   # the general position: Z' = 1
  problems = []
  for _ in range(max_tries):
    crystal = pyxtal(molecular=True)
    try:
      crystal.from_random(3, number, [pymolecule], [z], factor=factor,
                          random_state=np.random.default_rng(int(rng.integers(2 ** 31))))
    except Exception as e:  # noqa: BLE001 -- PyXtal raises many kinds when packing fails
      problems.append("PyXtal: %s" % str(e)[:80])
      continue
    if not crystal.valid:
      problems.append("PyXtal found no valid packing")
      continue
    frac_all, _ = crystal.mol_sites[0].get_coords_and_species(absolute=False)
    symmetry = cctbx_crystal.symmetry(
      unit_cell=tuple(crystal.lattice.get_para(degree=True)),
      space_group_info=sgtbx.space_group_info(symbol="Hall: " + hall_symbol(crystal.group.hall_number)))
    frac = np.asarray(frac_all)[:len(molecule.elements)]
    # PyXtal's cells can be very oblique (beta 40 degrees): squeeze in the best cell
    to_best = (symmetry.change_of_basis_op_to_niggli_cell() if symmetry.space_group().n_smx() == 1
               else symmetry.change_of_basis_op_to_best_cell())
    if not to_best.is_identity_op():
      symmetry = symmetry.change_basis(to_best)
      frac = np.array([to_best.c() * tuple(x) for x in frac])
    return symmetry, frac, problems
  raise Sorry("PyXtal could not pack %s (%s)." % (molecule.smiles, "; ".join(problems[-3:])))


def orthogonalisation_matrix(cell):
  """cctbx's orthogonalisation (a along x, b in the xy plane) in numpy: the
  squeeze asks for it thousands of times per crystal."""
  a, b, c = cell[:3]
  ca, cb, cg = np.cos(np.radians(cell[3:6]))
  sg = np.sin(np.radians(cell[5]))
  volume = cell_volume(cell)
  return np.array([[a, b * cg, c * cb],
                   [0.0, b * sg, c * (ca - cb * cg) / sg],
                   [0.0, 0.0, volume / (a * b * sg)]])


def cell_volume(cell):
  a, b, c = cell[:3]
  ca, cb, cg = np.cos(np.radians(cell[3:6]))
  return float(a * b * c * np.sqrt(max(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg, 0.0)))


class RigidPacking:
  """A rigid molecule in the general position of a space group, for the
  squeeze: cell parameters, the molecule's orientation
  (Cartesian rotation of its body frame) and its centroid (fractional).
  Contacts with every symmetry copy near it are checked in numpy (copies are
  pre-selected by centroid distance, so a check costs well under 1 ms)."""

  def __init__(self, space_group, cell, body, is_hydrogen, centroid_frac, min_non_h, min_h):
    self.ops = [(np.array(op.r().as_double()).reshape(3, 3), np.array(op.t().as_double()))
                for op in space_group]
    self.op_r = np.array([r for r, _ in self.ops])     # (n_ops, 3, 3)
    self.op_t = np.array([t for _, t in self.ops])     # (n_ops, 3)
    self._grids = {}
    self.system = space_group.crystal_system()
    self.cell = np.array(cell, dtype=float)
    self.body = np.asarray(body, dtype=float)
    self.rotation = np.eye(3)
    self.centroid = np.asarray(centroid_frac, dtype=float)
    self.is_h = np.asarray(is_hydrogen, dtype=bool)
    self.radius = float(np.linalg.norm(self.body, axis=1).max())
    self.min_non_h, self.min_h = min_non_h, min_h
    self.max_bound = max(min_non_h, min_h)
    self.min_spacing = 3.0

  def orthogonalisation(self, cell=None):
    return orthogonalisation_matrix(self.cell if cell is None else cell)

  def volume(self, cell=None):
    return cell_volume(self.cell if cell is None else cell)

  def lattice_grid(self, m):
    """Lattice translations -m..m along each axis, (n, 3), cached."""
    key = tuple(int(k) for k in m)
    if key not in self._grids:
      self._grids[key] = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in key], indexing="ij"),
                                  -1).reshape(-1, 3).astype(float)
    return self._grids[key]

  def sites_frac(self, cell=None, rotation=None, centroid=None):
    orth = self.orthogonalisation(cell)
    rotation = self.rotation if rotation is None else rotation
    centroid = self.centroid if centroid is None else centroid
    return centroid + np.linalg.solve(orth, (self.body @ rotation.T).T).T

  def worst_overlap(self, cell=None, rotation=None, centroid=None):
    """Largest (bound - distance) over intermolecular pairs; <= 0: no clash."""
    return self.overlap(cell, rotation, centroid)[1]

  def overlap(self, cell=None, rotation=None, centroid=None):
    """(sum of squared overlaps, largest overlap) over intermolecular pairs,
    an overlap being bound - distance (A) where positive."""
    cell = self.cell if cell is None else cell
    centroid = self.centroid if centroid is None else centroid
    rotation = self.rotation if rotation is None else rotation
    orth = self.orthogonalisation(cell)
    frac_of = np.linalg.inv(orth)
    heights = 1.0 / np.linalg.norm(frac_of, axis=1)   # interplanar spacings
    if heights.min() < self.min_spacing:
      return np.inf, np.inf   # a degenerate cell: no real crystal has lattice planes this close
    cart = centroid @ orth.T + self.body @ rotation.T
    frac = cart @ frac_of.T
    reach = 2 * self.radius + max(self.min_non_h, self.min_h)
    grid = self.lattice_grid(np.ceil(reach / heights).astype(int) + 1)
    # every symmetry copy's centroid, each lattice translation of it (the
    # copy's nearest image first), and which of them come within reach
    c_copies = self.op_r @ centroid + self.op_t                         # (n_ops, 3)
    lattice = grid[None, :, :] + np.round(centroid - c_copies)[:, None, :]   # (n_ops, n_grid, 3)
    offsets = (c_copies[:, None, :] + lattice - centroid) @ orth.T
    near = np.einsum("ogk,ogk->og", offsets, offsets) < reach * reach
    near[0] &= np.any(lattice[0] != 0, axis=1)                          # not the molecule itself
    op_index, grid_index = np.nonzero(near)
    if not len(op_index):
      return 0.0, -np.inf
    copies = np.einsum("oij,aj->oai", self.op_r, frac) + self.op_t[:, None, :]   # (n_ops, atoms, 3)
    others = (copies[op_index] + lattice[op_index, grid_index][:, None, :]).reshape(-1, 3) @ orth.T
    other_h = np.tile(self.is_h, len(op_index))
    # only atoms of other molecules within reach of this one can touch it
    centre = centroid @ orth.T
    inside = np.square(others - centre).sum(axis=1) < (self.radius + self.max_bound) ** 2
    others, other_h = others[inside], other_h[inside]
    if not len(others):
      return 0.0, -np.inf
    d2 = (np.square(cart).sum(axis=1)[:, None] + np.square(others).sum(axis=1)[None, :]
          - 2.0 * cart @ others.T)
    bound = np.where(self.is_h[:, None] | other_h[None, :], self.min_h, self.min_non_h)
    excess = bound - np.sqrt(np.maximum(d2, 0.0))
    return float(np.square(excess[excess > 0]).sum()), float(excess.max())

  def free_cell_moves(self):
    """Indices of the cell parameters the crystal system lets vary (for
    tetragonal, trigonal and hexagonal cells b follows a: tie_cell)."""
    return {"Triclinic": [0, 1, 2, 3, 4, 5], "Monoclinic": [0, 1, 2, 4], "Orthorhombic": [0, 1, 2],
            "Tetragonal": [0, 2], "Trigonal": [0, 2], "Hexagonal": [0, 2]}.get(self.system, [])

  def tie_cell(self, cell):
    """The cell with the crystal system's equal lengths made equal again
    (a = b for tetragonal, trigonal and hexagonal axes, a = b = c for cubic
    and rhombohedral axes); others unchanged."""
    if self.system in ("Tetragonal", "Hexagonal") or (self.system == "Trigonal" and cell[5] > 119):
      cell[1] = cell[0]
    elif self.system in ("Cubic", "Trigonal"):
      cell[1] = cell[2] = cell[0]
    return cell


def relax(packing, rng, max_steps, cell_step=0.01, angle_step=1.0, rotation_step=3.0,
          translation_step=0.2):
  """Monte Carlo at fixed cell volume that removes overlaps: random turns and
  shifts of the molecule and volume-keeping changes of the cell shape are
  kept when they lower the summed squared overlap.  Step sizes shrink when
  few moves are kept.  Returns (no overlap left, steps).

  (Tried and dropped: L-BFGS of the same energy with numerical gradients --
  slower and jammed more often; and a pure hard-sphere squeeze, which
  jammed at 18-27 A^3 per non-H atom.)"""
  energy, worst = packing.overlap()
  free = packing.free_cell_moves()
  lengths = [q for q in free if q < 3]
  scale, kept, tried = 1.0, 0, 0
  for step in range(max_steps):
    if worst <= 0:
      return True, step
    kind = rng.random() if free else 0.3 + 0.7 * rng.random()   # a cubic cell has no shape to change
    cell, rotation, centroid = packing.cell, packing.rotation, packing.centroid
    if kind < 0.3:
      cell = cell.copy()
      i = free[int(rng.integers(len(free)))]
      if i < 3:
        others = [q for q in lengths if q != i]
        j = others[int(rng.integers(len(others)))]
        f = 1 + scale * cell_step * rng.normal()
        cell[i] *= f
        cell[j] /= f
      else:
        cell[i] += scale * angle_step * rng.normal()
        if not 60 < cell[i] < 120:
          continue
      cell = packing.tie_cell(cell)
      cell[:3] *= (packing.volume() / packing.volume(cell)) ** (1 / 3)   # the volume exactly
    elif kind < 0.65:
      rotation = rotation_matrix(np.radians(scale * rotation_step) * rng.normal(size=3)) @ rotation
    else:
      orth = packing.orthogonalisation()
      centroid = centroid + np.linalg.solve(orth, scale * translation_step * rng.normal(size=3))
    trial_energy, trial_worst = packing.overlap(cell, rotation, centroid)
    tried += 1
    if trial_energy < energy:
      packing.cell, packing.rotation, packing.centroid = cell, rotation, centroid
      energy, worst = trial_energy, trial_worst
      kept += 1
    if tried == 50:
      scale = float(np.clip(scale * (1.3 if kept > 10 else 0.7), 0.05, 2.0))
      kept = tried = 0
  return worst <= 0, max_steps


def rotation_matrix(rotation_vector):
  """Rotation by |v| radians about v (Rodrigues)."""
  v = np.asarray(rotation_vector, dtype=float)
  a = np.linalg.norm(v)
  if a < 1e-12:
    return np.eye(3)
  axis = v / a
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def squeeze(packing, target_volume, rng, max_steps=4000, stage=0.93):
  """Compression to target_volume (A^3) in stages: the cell is shrunk
  isotropically (by `stage` in volume, the molecule rigid, its centroid
  fixed in fractional coordinates), then relaxed until no contact is too
  close; a stage that cannot be relaxed within the remaining steps ends the
  squeeze.  A start with clashes is first expanded.  Returns (reached, steps)."""
  for _ in range(60):
    if packing.worst_overlap() <= 0:
      break
    packing.cell[:3] *= 1.05
  else:
    return False, 0
  used = 0
  while packing.volume() > target_volume * 1.0001:
    volume = max(target_volume, packing.volume() * stage)
    packing.cell[:3] *= (volume / packing.volume()) ** (1 / 3)
    ok, steps = relax(packing, rng, max_steps - used)
    used += steps
    if not ok:
      return False, used
  return True, used


def pack(molecule, space_group, seed, volume_per_non_h=18.0, u_iso=0.03, min_contact_non_h=3.0,
         min_contact_h=2.0, start_volume_per_non_h=30.0, max_tries=10, max_steps=4000):
  """One molecule (cctbx_p2a.molecules.Molecule) packed in space_group (a key
  of SPACE_GROUPS), Z' = 1, at volume_per_non_h A^3 per non-H atom, with no
  intermolecular contact below min_contact_non_h (non-H pairs) or
  min_contact_h (pairs with a hydrogen).

  PyXtal places the molecule by symmetry at start_volume_per_non_h, where it
  packs quickly; at real densities its random placement is slow (tens of
  seconds for 28 atoms) and leaves clashes (non-H contacts down to 1.7 A, H
  to 0.8 A: measured).  The packing is then squeezed down to the wanted
  volume (squeeze: compression steps, each followed by Monte Carlo of the
  cell shape and the molecule's orientation and position that removes the
  overlaps).  A start that will not squeeze is redrawn, up to max_tries;
  then a Sorry.  Returns a PackedCrystal."""
  number = space_group_number(space_group)
  t0 = time.time()
  rng = np.random.default_rng([int(seed), 23])
  is_h = np.asarray(molecule.is_hydrogen, dtype=bool)
  problems = []
  pymolecule = pyxtal_molecule_of(molecule, rng)
  for attempt in range(max_tries):
    symmetry, frac, notes = pyxtal_start(molecule, number, start_volume_per_non_h, rng, max_tries,
                                         pymolecule=pymolecule)
    problems += notes
    orth = np.array(symmetry.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    cart = frac @ orth.T
    centroid = cart[~is_h].mean(axis=0)
    packing = RigidPacking(symmetry.space_group(), symmetry.unit_cell().parameters(), cart - centroid,
                           is_h, np.linalg.solve(orth, centroid), min_contact_non_h, min_contact_h)
    target = volume_per_non_h * molecule.n_atoms * symmetry.space_group().order_z()
    reached, steps = squeeze(packing, target, rng, max_steps=max_steps)
    if not reached:
      problems.append("squeezed only to %.1f A^3 per non-H atom in %d steps" % (
        packing.volume() / (molecule.n_atoms * symmetry.space_group().order_z()), steps))
      continue
    from cctbx import crystal as cctbx_crystal
    squeezed = cctbx_crystal.symmetry(unit_cell=tuple(packing.cell),
                                      space_group=symmetry.space_group())
    sites = packing.sites_frac() - np.floor(packing.centroid)   # the centroid inside the cell
    xs = structure_in_best_cell(squeezed, molecule, sites, u_iso)
    heavy, with_h = intermolecular_contacts(xs, is_h)   # an independent check (cctbx)
    if heavy < min_contact_non_h - 1e-3 or with_h < min_contact_h - 1e-3:
      problems.append("contact %.2f A (non-H) / %.2f A (H) after squeezing" % (heavy, with_h))
      continue
    orth = np.array(xs.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    cart = np.array(xs.sites_frac()) @ orth.T
    centroid = cart[~is_h].mean(axis=0)
    z_cell = xs.space_group().order_z()
    packed = PackedCrystal(
      xray_structure=xs, is_hydrogen=is_h, image_sites_cart=cart - centroid,
      centroid_frac=np.linalg.solve(orth, centroid), molecule=molecule,
      space_group=str(xs.space_group_info()),
      volume_per_non_h=xs.unit_cell().volume() / (z_cell * molecule.n_atoms),
      closest_contact_non_h=heavy, closest_contact_h=with_h, squeeze_steps=steps, seed=int(seed),
      tries=attempt + 1, seconds=time.time() - t0)
    if problems:
      packed.notes.append("%d draws redrawn: %s" % (len(problems), "; ".join(problems)))
    return packed
  raise Sorry("No packing of %s in %s at %.1f A^3 per non-H atom after %d draws (%s): lower the "
              "density (packing.volume_per_non_h) or the contact bounds." % (
                molecule.smiles, space_group, volume_per_non_h, max_tries, "; ".join(problems[-3:])))


def default_params():
  from cctbx_p2a import phil
  return phil.extract("packing")


def generate(seed, params=None):
  """A seeded packed crystal: a molecule (cctbx_p2a.molecules.generate), a
  space group and a density drawn from the `packing` PHIL scope.  A molecule
  that will not pack is replaced by the next draw.  The same seed gives the
  same crystal."""
  from cctbx_p2a import molecules
  p = (params or default_params()).packing
  groups = list(p.space_groups)
  for g in groups:
    space_group_number(g)
  lo, hi = (list(p.volume_per_non_h) * 2)[:2]
  u_lo, u_hi = (list(p.u_iso) * 2)[:2]
  rng = np.random.default_rng([int(seed), 29])
  failures = []
  for attempt in range(p.max_molecules):
    molecule = molecules.generate(int(rng.integers(2 ** 31)), n_atoms=tuple(p.n_atoms),
                                  source_weights=tuple(p.source_weights))
    group = groups[int(rng.integers(len(groups)))]
    try:
      packed = pack(molecule, group, int(rng.integers(2 ** 31)),
                    volume_per_non_h=float(rng.uniform(lo, hi)), u_iso=float(rng.uniform(u_lo, u_hi)),
                    min_contact_non_h=p.min_contact_non_h, min_contact_h=p.min_contact_h,
                    start_volume_per_non_h=p.start_volume_per_non_h, max_tries=p.max_tries,
                    max_steps=p.squeeze_steps)
    except Sorry as e:
      failures.append(str(e)[:100])
      continue
    packed.seed = int(seed)
    if failures:
      packed.notes.append("%d molecules would not pack first" % len(failures))
    return packed
  raise Sorry("No packed crystal after %d molecules (seed %d): %s" % (
    p.max_molecules, seed, failures[-1] if failures else ""))

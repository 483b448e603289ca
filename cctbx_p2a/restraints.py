"""Geometry restraints of a known molecule for the finishing's refinement.

Below atomic resolution a free-atom refinement has too few reflections per
parameter (thpp at 2.0 A: 125 for 64) and bends a rightly placed molecule
into contacts no molecule has (C10-C11 2.08 A), which the verdict refuses.
A known molecule's own geometry is known: its 1-2 distances (bonds) and its
1-3 distances (angles as distances, as SHELX DANG) are restrained to the
search model's values, like a SHELX refinement with DFIX/DANG.

    MoleculeRestraints.from_structure(xs, bond_sigma, angle_distance_sigma)
      pairs, targets, sigmas of one connected copy of the molecule, the
      atoms of the asymmetric unit as given (any space group)
    applies_to(xs)     the atom list is still the molecule's
    RestrainedLbfgs    cctbx.xray.minimization.lbfgs + the restraint term

The restraint term is chi^2-like, sum ((d - d0) / sigma)^2, and the data
term is put on the same footing: the least-squares target divided by its
value at the start of the run, times the number of reflections, i.e. each
reflection's residual at the start counts as one sigma.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cctbx.xray import minimization

from cctbx_p2a.finishing import covalent_radius
from cctbx_p2a.placement import orthogonalisation


@dataclass
class MoleculeRestraints:
  """1-2 and 1-3 distance restraints between atoms i, j + lattice offset
  (the molecule's atoms as given, a whole lattice translation of an atom
  kept: the vector is frac[j] + offset - frac[i])."""
  elements: tuple
  pairs: np.ndarray      # (m, 2) atom indices
  offsets: np.ndarray    # (m, 3) whole lattice translations of atom j
  targets: np.ndarray    # (m,) A
  sigmas: np.ndarray     # (m,) A
  n_bonds: int
  max_deviation: float = 1.0
  n_used: int = 0        # refinements restrained, and not (the atoms no longer the molecule's)
  n_skipped: int = 0

  @classmethod
  def from_structure(cls, xray_structure, bond_sigma=0.02, angle_distance_sigma=0.04,
                     bond_tolerance=0.4, max_deviation=1.0):
    """Bonds: pairs within the sum of covalent radii + bond_tolerance A;
    1-3 pairs: two neighbours of one atom (not bonded to each other).
    Targets are the structure's own distances (a rigidly placed search
    model: its conformer's distances)."""
    frac = xray_structure.sites_frac().as_numpy_array().reshape(-1, 3)
    elements = tuple(xray_structure.scatterers().extract_scattering_types())
    orth = orthogonalisation(xray_structure.unit_cell())
    n = len(elements)
    radii = np.array([covalent_radius(e) for e in elements])
    # each pair by the lattice image closest to the atom (a wrapped atom keeps its molecule)
    delta = frac[None, :, :] - frac[:, None, :]
    offsets = -np.round(delta)
    dist = np.linalg.norm((delta + offsets) @ orth.T, axis=2)
    bonded = (dist <= radii[:, None] + radii[None, :] + bond_tolerance) & ~np.eye(n, dtype=bool)
    bonds = [(i, j) for i in range(n) for j in range(i + 1, n) if bonded[i, j]]
    angles = set()
    for k in range(n):
      nb = np.flatnonzero(bonded[k])
      for a in range(len(nb)):
        for b in range(a + 1, len(nb)):
          i, j = sorted((int(nb[a]), int(nb[b])))
          if not bonded[i, j]:
            angles.add((i, j))
    pairs = bonds + sorted(angles)
    pairs_a = np.array(pairs, dtype=int).reshape(-1, 2)
    offs_a = offsets[pairs_a[:, 0], pairs_a[:, 1]].reshape(-1, 3)
    made = cls(elements=elements, pairs=pairs_a, offsets=offs_a, targets=np.zeros(len(pairs)),
               sigmas=np.array([bond_sigma] * len(bonds) + [angle_distance_sigma] * len(angles)),
               n_bonds=len(bonds), max_deviation=max_deviation)
    made.targets = made.distances(xray_structure)
    return made

  @property
  def n_angles(self):
    return len(self.pairs) - self.n_bonds

  def _vectors(self, frac, orth):
    i, j = self.pairs[:, 0], self.pairs[:, 1]
    return (frac[j] + self.offsets - frac[i]) @ orth.T

  def distances(self, xray_structure):
    frac = xray_structure.sites_frac().as_numpy_array().reshape(-1, 3)
    orth = orthogonalisation(xray_structure.unit_cell())
    return np.linalg.norm(self._vectors(frac, orth), axis=1)

  def applies_to(self, xray_structure):
    """The atom list is still the molecule's: same count, elements in the
    same order, and no restrained distance further than max_deviation A from
    its target (an atom replaced by a peak elsewhere is not the molecule's)."""
    elements = tuple(xray_structure.scatterers().extract_scattering_types())
    if elements != self.elements:
      return False
    return len(self.pairs) == 0 or bool(
      np.abs(self.distances(xray_structure) - self.targets).max() <= self.max_deviation)

  def chi2_and_gradient(self, frac, orth):
    """sum ((d - d0) / sigma)^2 and its gradient with respect to the
    Cartesian sites ((n, 3); cctbx's minimiser shifts sites in Cartesian A)."""
    v = self._vectors(frac, orth)
    d = np.maximum(np.linalg.norm(v, axis=1), 1e-6)
    r = (d - self.targets) / self.sigmas
    # d chi2 / d v = 2 r / sigma * v / d, v = x_j - x_i (Cartesian)
    dv = (2 * r / self.sigmas / d)[:, None] * v
    g = np.zeros_like(frac)
    np.add.at(g, self.pairs[:, 1], dv)
    np.add.at(g, self.pairs[:, 0], -dv)
    return float((r * r).sum()), g


def for_known_molecule(xray_structure, params):
  """The restraints of a known-molecule start (the placed search model: a
  rigid copy, so its distances are the conformer's), or None when the
  refinement scope's known_molecule_restraints is off."""
  rp = params.refinement
  if not rp.known_molecule_restraints:
    return None
  return MoleculeRestraints.from_structure(
    xray_structure, bond_sigma=rp.bond_sigma, angle_distance_sigma=rp.angle_distance_sigma,
    bond_tolerance=rp.restraint_bond_tolerance, max_deviation=rp.restraint_max_deviation)


def special_position_projectors(xray_structure):
  """Atom index -> the Cartesian projector onto the shifts its special
  position allows (the site symmetry's averaging operator): the restraint
  gradient of an atom on an inversion centre, say, is zero, as cctbx's own."""
  orth = orthogonalisation(xray_structure.unit_cell())
  table = xray_structure.site_symmetry_table()
  return {int(i): orth @ np.array(table.get(i).special_op().r().as_double()).reshape(3, 3)
          @ np.linalg.inv(orth) for i in table.special_position_indices()}


class RestrainedLbfgs(minimization.lbfgs):
  """cctbx.xray.minimization.lbfgs of the data target plus the restraints:
  N_refl * target / target_start + chi2(restraints).  Sites are
  refined (U_iso too where flagged); the site gradients sit first in each
  scatterer's block of the packed parameters."""

  def __init__(self, restraints, target_functor, xray_structure, **kwargs):
    self.restraints = restraints
    self._orth = orthogonalisation(xray_structure.unit_cell())
    self._n_data = target_functor.f_obs().size()
    self._data_scale = None
    self._special = special_position_projectors(xray_structure)
    super().__init__(target_functor=target_functor, xray_structure=xray_structure, **kwargs)

  def compute_functional_and_gradients(self):
    from cctbx.array_family import flex
    f, g = super().compute_functional_and_gradients()
    if self._data_scale is None:   # the start's residual per reflection is one sigma
      self._data_scale = self._n_data / max(f, 1e-12)
    xs = self.xray_structure
    n = xs.scatterers().size()
    frac = xs.sites_frac().as_numpy_array().reshape(-1, 3)
    chi2, gcart = self.restraints.chi2_and_gradient(frac, self._orth)
    for i, m in self._special.items():   # an atom on a special position moves only along it
      gcart[i] = m @ gcart[i]
    stride = g.size() // n
    assert stride * n == g.size() and stride >= 3, "every atom refined alike, sites flagged"
    packed = g.as_numpy_array().reshape(n, stride) * self._data_scale
    packed[:, :3] += gcart
    self.f = f * self._data_scale + chi2
    self.g = flex.double(packed.ravel())
    return self.f, self.g

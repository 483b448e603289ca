"""cctbx_p2a.assembly: the asymmetric unit comes back as whole molecules,
the same crystal, named as SHELXT names atoms."""
import cctbx_p2a  # noqa: F401  (must stay the first import)

import random

import numpy as np
import pytest
from cctbx import crystal, xray

from cctbx_p2a import assembly, files, finishing, measured


def thpp_sites():
  """cctbx's thpp (P2_1/n, 16 non-H atoms, S and F among them): one published molecule."""
  s = measured.thpp_set()
  if s is None:
    pytest.skip("this cctbx has no smtbx thpp data")
  return measured.reference_sites(files.read_structure(s.reference))


def scattered(xs, seed=1):
  """Every atom moved to a random symmetry copy and lattice translation: how
  peak searches and refinement can leave a right structure."""
  rnd = random.Random(seed)
  ops = list(xs.space_group().all_ops())
  copy = xs.deep_copy_scatterers()
  for sc in copy.scatterers():
    sc.site = tuple(a + rnd.randint(-2, 2) for a in rnd.choice(ops) * sc.site)
  return copy


def bonds(xs):
  """Sorted lengths (A) of the bonds inside the asymmetric unit as written,
  no symmetry: what a viewer draws from the file."""
  cart = np.array(xs.sites_cart())
  radii = np.array([finishing.covalent_radius(sc.scattering_type) for sc in xs.scatterers()])
  d = np.sqrt(((cart[:, None] - cart[None]) ** 2).sum(-1))
  i, j = np.where(np.triu(d <= radii[:, None] + radii[None] + assembly.BOND_TOLERANCE, 1))
  return np.sort(d[i, j])


def f_calc(xs):
  return xs.structure_factors(d_min=1.0, algorithm="direct").f_calc()


def test_a_scattered_molecule_comes_back_whole_and_the_same_crystal():
  published = thpp_sites()
  mess = scattered(published)
  assert len(bonds(mess)) < len(bonds(published)) - 5   # the mess breaks most bonds
  whole = assembly.whole_molecules(mess)
  # one molecule again, every bond of the published asymmetric unit drawn from the file
  assert len(assembly.fragments(whole)) == len(assembly.fragments(published)) == 1
  assert np.allclose(bonds(whole), bonds(published), atol=1e-6)
  # the same crystal: amplitudes and phases unchanged
  a, b = f_calc(mess), f_calc(whole)
  assert np.abs(np.array(a.data()) - np.array(b.data())).max() < 1e-6 * np.abs(np.array(a.data())).max()
  # the molecule's centroid in the cell, atoms heaviest first and named per element
  assert np.all((np.array(whole.sites_frac()).mean(axis=0) >= 0)
                & (np.array(whole.sites_frac()).mean(axis=0) < 1))
  labels = [sc.label for sc in whole.scatterers()]
  z = [assembly.atomic_number(sc.scattering_type) for sc in whole.scatterers()]
  assert z == sorted(z, reverse=True)
  for element in set(sc.scattering_type for sc in whole.scatterers()):
    mine = [l for l, sc in zip(labels, whole.scatterers()) if sc.scattering_type == element]
    assert mine == ["%s%d" % (element, k + 1) for k in range(len(mine))]


def test_a_molecule_across_a_p1_box_edge_is_joined():
  """The network route's isolated molecule in a P1 cell, found astride the
  cell's edges: lattice translations alone join it, at the copy whose
  centroid lies nearest the cell's centre."""
  published = thpp_sites()
  cart = np.array(published.sites_cart())
  cs = crystal.symmetry(unit_cell=(20, 21, 22, 90, 90, 90), space_group_symbol="P1")
  centroid = np.array([0.1, 0.95, 0.5])   # astride the x and y edges
  box = xray.structure(crystal_symmetry=cs)
  for sc, site in zip(published.scatterers(), cart - cart.mean(axis=0)):
    frac = (np.array(cs.unit_cell().fractionalize(tuple(site))) + centroid) % 1.0   # wrapped: torn apart
    box.add_scatterer(sc.customized_copy(site=tuple(frac)))
  assert len(assembly.fragments(box)) == 1                  # bonded across the edges...
  assert len(bonds(box)) < len(bonds(published))            # ...but not drawn so
  whole = assembly.whole_molecules(box)
  assert np.allclose(bonds(whole), bonds(published), atol=1e-6)
  assert np.allclose(np.array(whole.sites_frac()).mean(axis=0), centroid, atol=1e-6)


def roomy(xs, factor=1.6):
  """The same molecule in a cell `factor` times longer (same space group),
  so that nothing sits near the neighbouring molecules."""
  p = xs.unit_cell().parameters()
  cs = crystal.symmetry(unit_cell=[x * factor for x in p[:3]] + list(p[3:]),
                        space_group_info=xs.space_group_info())
  cart = np.array(xs.sites_cart())
  centre = np.array(cs.unit_cell().orthogonalize(tuple(np.array(xs.sites_frac()).mean(axis=0))))
  out = xray.structure(crystal_symmetry=cs)
  for sc, site in zip(xs.scatterers(), cart - cart.mean(axis=0) + centre):
    out.add_scatterer(xray.scatterer(label=sc.label, site=cs.unit_cell().fractionalize(tuple(site)),
                                     u=0.03, scattering_type=sc.scattering_type))
  return out


def test_fragments_are_kept_next_to_each_other():
  """A counter-ion or solvent atom goes to the copy nearest the molecule, not
  to wherever its peak was found."""
  published = roomy(thpp_sites())
  with_water = published.deep_copy_scatterers()
  # an O 3.2 A beyond the atom farthest from the centroid (a hydrogen-bonded water), then sent to a far
  # symmetry copy
  cart = np.array(published.sites_cart())
  outer = np.argmax(((cart - cart.mean(axis=0)) ** 2).sum(-1))
  away = (cart[outer] - cart.mean(axis=0)) / np.linalg.norm(cart[outer] - cart.mean(axis=0))
  site = cart[outer] + 3.2 * away
  frac = published.unit_cell().fractionalize(tuple(site))
  op = list(published.space_group().all_ops())[1]
  with_water.add_scatterer(xray.scatterer(label="O99", site=tuple(a + 1 for a in op * frac),
                                          u=0.03, scattering_type="O"))
  assert [len(p) for p in assembly.fragments(with_water)] == [16, 1]   # bonded to nothing
  whole = assembly.whole_molecules(scattered(with_water, seed=3))
  parts = assembly.fragments(whole)
  assert [len(p) for p in parts] == [16, 1]
  water = [i for i, sc in enumerate(whole.scatterers()) if sc.label == "O%d" % sum(
    s.scattering_type == "O" for s in whole.scatterers())]
  cart = np.array(whole.sites_cart())
  others = np.delete(cart, water, axis=0)
  # at least as near as it was put (3.0 A from an atom; another copy may lie nearer still)
  assert np.sqrt(((others - cart[water]) ** 2).sum(-1)).min() <= (
    np.sqrt(((np.array(published.sites_cart()) - site) ** 2).sum(-1)).min() + 1e-3)

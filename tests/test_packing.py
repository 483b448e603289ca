"""Packed training crystals: the space group asked for, Z' = 1, the density
asked for, no clash between molecules, the same crystal from the same seed."""
import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("pyxtal")

from cctbx_p2a import molecules, packing  # noqa: E402

SPACE_GROUP_NUMBERS = {"P-1": 2, "P21/c": 14, "C2/c": 15, "P212121": 19, "P21": 4, "Pbca": 61, "Pna21": 33}
# beyond the training groups (benchmarks/space_groups.py): a cell whose
# lengths the crystal system ties together must keep them tied while squeezed
OTHER_SPACE_GROUPS = {"P4_1": 76, "R-3": 148, "P6_1": 169, "Pa-3": 205}


@pytest.fixture(scope="module")
def molecule():
  return molecules.generate(4, n_atoms=(9, 9))


def contacts_by_copies(xs, is_h):
  """Closest intermolecular distances, brute force: every symmetry copy of
  the whole molecule in the 5x5x5 cells around it (independent of the cctbx
  pair tables that packing uses)."""
  orth = np.array(xs.unit_cell().orthogonalization_matrix()).reshape(3, 3)
  frac = np.array(xs.sites_frac())
  cart = frac @ orth.T
  heavy, with_h = np.inf, np.inf
  lattice = np.array([(i, j, k) for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)])
  pair_h = is_h[:, None] | is_h[None, :]
  for op in xs.space_group():
    r = np.array(op.r().as_double()).reshape(3, 3)
    t = np.array(op.t().as_double())
    copy = frac @ r.T + t
    for shift in lattice:
      if op.is_unit_mx() and not shift.any():
        continue
      d = np.linalg.norm(cart[:, None] - ((copy + shift) @ orth.T)[None], axis=-1)
      heavy = min(heavy, d[~pair_h].min())
      with_h = min(with_h, d[pair_h].min())
  return heavy, with_h


@pytest.mark.parametrize("group", sorted(SPACE_GROUP_NUMBERS) + sorted(OTHER_SPACE_GROUPS))
def test_packed_crystal(molecule, group):
  packed = packing.pack(molecule, group, seed=3, volume_per_non_h=19.0)
  xs = packed.xray_structure
  numbers = dict(SPACE_GROUP_NUMBERS, **OTHER_SPACE_GROUPS)
  assert xs.space_group_info().type().number() == numbers[group]
  # the cell obeys its crystal system (cctbx checks it against the space group)
  assert xs.space_group().is_compatible_unit_cell(xs.unit_cell())
  a, b, c = xs.unit_cell().parameters()[:3]
  if xs.space_group().crystal_system() in ("Tetragonal", "Trigonal", "Hexagonal", "Cubic"):
    assert a == pytest.approx(b, rel=1e-9)
  # Z' = 1: the asymmetric unit is exactly one whole molecule, hydrogens flagged
  assert xs.scatterers().size() == len(molecule.elements)
  assert packed.is_hydrogen.sum() == molecule.is_hydrogen.sum()
  assert [sc.scattering_type for sc in xs.scatterers()] == [str(e) for e in molecule.elements]
  assert xs.expand_to_p1().scatterers().size() == xs.space_group().order_z() * len(molecule.elements)
  # the density asked for
  volume = xs.unit_cell().volume() / (xs.space_group().order_z() * molecule.n_atoms)
  assert volume == pytest.approx(19.0, rel=1e-3)
  # no clash, counted independently
  heavy, with_h = contacts_by_copies(xs, packed.is_hydrogen)
  assert heavy >= 3.0 - 1e-3 and with_h >= 2.0 - 1e-3
  assert heavy == pytest.approx(packed.closest_contact_non_h, abs=1e-3)
  # the route-(a) target: the molecule itself, centred on its non-H centroid
  image = packed.image_sites_cart
  assert np.allclose(image[~packed.is_hydrogen].mean(axis=0), 0, atol=1e-9)
  d_image = np.linalg.norm(image[:, None] - image[None], axis=-1)
  d_mol = np.linalg.norm(molecule.sites_cart[:, None] - molecule.sites_cart[None], axis=-1)
  assert np.allclose(d_image, d_mol, atol=1e-6)


def test_same_seed_same_crystal(molecule):
  a = packing.pack(molecule, "P21/c", seed=11, volume_per_non_h=19.0)
  b = packing.pack(molecule, "P21/c", seed=11, volume_per_non_h=19.0)
  c = packing.pack(molecule, "P21/c", seed=12, volume_per_non_h=19.0)
  assert a.xray_structure.unit_cell().is_similar_to(b.xray_structure.unit_cell(), 1e-9, 1e-9)
  assert np.allclose(np.array(a.xray_structure.sites_frac()), np.array(b.xray_structure.sites_frac()))
  assert not np.allclose(np.array(a.xray_structure.sites_frac()), np.array(c.xray_structure.sites_frac()))


def test_unknown_space_group_refused(molecule):
  from libtbx.utils import Sorry
  with pytest.raises(Sorry, match="Unknown space group"):
    packing.pack(molecule, "P 7", seed=0)


def test_generate_draws_from_the_params():
  params = packing.default_params()
  params.packing.space_groups = ["P212121"]
  params.packing.n_atoms = [7, 9]
  params.packing.volume_per_non_h = [19.5, 20.5]
  packed = packing.generate(5, params)
  assert packed.xray_structure.space_group_info().type().number() == 19
  assert 7 <= packed.molecule.n_atoms <= 9
  assert 19.5 - 1e-3 <= packed.volume_per_non_h <= 20.5 + 1e-3
  again = packing.generate(5, params)
  assert np.allclose(np.array(packed.xray_structure.sites_frac()),
                     np.array(again.xray_structure.sites_frac()))

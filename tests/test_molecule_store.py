"""A molecule store: real molecules made once (RDKit), drawn turned at random
where RDKit is not, the same molecule for a seed on both data paths."""
import os

import numpy as np
import pytest
from libtbx.utils import Sorry

from cctbx_p2a import molecule_store, phil, synthetic
from cctbx_p2a.molecule_store import MoleculeStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRYSTALS = os.path.join(REPO, "training", "crystals.npz")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
  """Molecules of the committed crystal store, as a molecule store."""
  path = str(tmp_path_factory.mktemp("store") / "molecules.npz")
  molecule_store.from_crystal_store(CRYSTALS, path)
  return path


def distances(sites):
  return np.linalg.norm(sites[:, None] - sites[None], axis=-1)


def test_a_store_round_trips_and_draws_turned_copies(store_path):
  store = MoleculeStore.load(store_path)
  assert len(store) > 3000
  assert store.summary()["non_h_atoms"] == [int(store.n_heavy.min()), int(store.n_heavy.max())]
  assert store.size_range()[0] >= 6
  m = store.molecules[0]
  assert np.allclose(m.non_h_sites.mean(axis=0), 0, atol=1e-4)   # centred on the non-H atoms
  assert m.is_hydrogen.any() and not m.is_hydrogen.all()
  one, again, other = store.draw(5, (10, 20)), store.draw(5, (10, 20)), store.draw(6, (10, 20))
  assert np.array_equal(one.sites_cart, again.sites_cart) and list(one.elements) == list(again.elements)
  assert 10 <= one.n_atoms <= 20
  stored = next(s for s in store.molecules if s.seed == one.seed)
  assert np.allclose(distances(one.sites_cart), distances(stored.sites_cart), atol=1e-4)   # a rotation
  assert not np.allclose(one.sites_cart, stored.sites_cart)
  assert (one.seed, one.sites_cart.tolist()) != (other.seed, other.sites_cart.tolist())
  with pytest.raises(Sorry, match="no molecule with 200-300 non-H atoms"):
    store.draw(0, (200, 300))


def test_store_cases_are_the_same_on_both_data_paths(store_path):
  pytest.importorskip("torch")
  from cctbx_p2a import batch_data
  params = phil.extract("train", "synthetic", "patterson", **{
    "synthetic.molecule_source": "store", "synthetic.molecule_store": store_path,
    "synthetic.n_atoms": "8 30", "synthetic.random_cell": True, "synthetic.d_min": "1.5 2.5"})
  for seed in range(3):
    fast = batch_data.draw_case(seed, params.synthetic)
    slow = synthetic.make_case(seed, params.synthetic, d_min_floor=2.0)
    assert np.allclose(fast.sites_centred, slow.sites_centred)
    assert 8 <= len(slow.sites_centred) <= 30
    non_h = [s for s in slow.xray_structure.scatterers() if s.scattering_type != "H"]
    assert len(non_h) == len(slow.sites_centred) < slow.xray_structure.scatterers().size()   # H scatter


def test_a_missing_or_wrong_store_is_refused(tmp_path):
  params = phil.extract("synthetic", **{"synthetic.molecule_source": "store"}).synthetic
  with pytest.raises(Sorry, match="needs synthetic.molecule_store"):
    synthetic.make_case(0, params)
  with pytest.raises(Sorry, match="No molecule store"):
    MoleculeStore.load(str(tmp_path / "none.npz"))
  np.savez(tmp_path / "other.npz", seeds=np.zeros(1))
  with pytest.raises(Sorry, match="is not a molecule store"):
    MoleculeStore.load(str(tmp_path / "other.npz"))


def test_build_generates_and_resumes(tmp_path):
  pytest.importorskip("rdkit")
  path = str(tmp_path / "made.npz")
  first = molecule_store.build(path, range(0, 2), n_atoms=(6, 12), log=open(os.devnull, "w"))
  assert [m.seed for m in first.molecules] == [0, 1]
  both = molecule_store.build(path, range(0, 3), n_atoms=(6, 12), log=open(os.devnull, "w"))
  assert [m.seed for m in both.molecules] == [0, 1, 2]
  assert np.allclose(both.molecules[0].sites_cart, first.molecules[0].sites_cart, atol=1e-5)
  from cctbx_p2a import molecules
  made = molecules.generate(2, n_atoms=(6, 12))
  assert np.allclose(both.molecules[2].sites_cart, made.sites_cart, atol=1e-5)
  assert list(both.molecules[2].elements) == list(made.elements)


def test_the_committed_store_holds_sound_molecules():
  """training/molecules.npz (what P2A_MOLECULES=yes trains on): 6-60 non-H
  atoms, every non-H atom bonded to another (none closer than 0.9 A or
  stranded beyond 2.9 A), hydrogens within 1.2 A of an atom."""
  store = MoleculeStore.load(os.path.join(REPO, "training", "molecules.npz"))
  assert len(store) >= 3000 and store.size_range() == (6, 60)
  for m in store.molecules[::160]:
    heavy, h = m.non_h_sites, m.sites_cart[m.is_hydrogen]
    d = distances(heavy) + 99 * np.eye(len(heavy))
    assert d.min() > 0.9 and d.min(axis=1).max() < 2.9, m.seed
    if len(h):
      to_any = np.linalg.norm(h[:, None] - m.sites_cart[None], axis=-1)
      to_any[to_any < 1e-6] = 99
      assert to_any.min(axis=1).max() < 1.2, m.seed

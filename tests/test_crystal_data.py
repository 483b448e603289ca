"""The crystal network's training data (route a2): stored crystals give the
Patterson window the cctbx path gives their data, and a target that does not
depend on which symmetry copy of the molecule the store holds."""
import numpy as np
import pytest
torch = pytest.importorskip("torch")  # the [train] extra

from libtbx.utils import Sorry

from cctbx_p2a import crystal_data, measured, patterson, phil, placement, train


@pytest.fixture(scope="module")
def thpp_crystal():
  s = measured.thpp_set()
  if s is None:
    pytest.skip("this cctbx has no smtbx thpp data")
  _, reference = measured.load(s)
  return crystal_data.from_structure(reference, seed=0), reference


def crystal_params(store_path, tmp_path=None, **extra):
  settings = {"train.crystal_store": str(store_path), "target.inverses": False,
              "target.voxel": 0.5, "target.sigma": 0.4,
              "train.crystal_holdout": 2, "synthetic.d_min": "2.0 2.0", "synthetic.noise": "0 0",
              "synthetic.completeness": "1 1", "synthetic.u_iso": "0.03 0.03",
              "synthetic.observation": "amplitudes"}
  if tmp_path is not None:
    settings["train.output_dir"] = str(tmp_path)
  settings.update(extra)
  return phil.extract("train", "synthetic", "patterson", **settings)


def test_store_round_trip(tmp_path, thpp_crystal):
  crystal, _ = thpp_crystal
  other = crystal_data.StoredCrystal(seed=3, hall=crystal.hall, cell=crystal.cell,
                                     sites_frac=crystal.sites_frac[:5], elements=crystal.elements[:5],
                                     is_hydrogen=crystal.is_hydrogen[:5])
  path = str(tmp_path / "store.npz")
  crystal_data.CrystalStore([other, crystal], failed_seeds=[7]).save(path)
  store = crystal_data.CrystalStore.load(path)
  assert [c.seed for c in store.crystals] == [0, 3]
  assert store.seeds() == {0, 3, 7}
  back = store.crystals[0]
  assert back.hall == crystal.hall and back.elements == crystal.elements
  assert np.allclose(back.cell, crystal.cell)
  assert np.allclose(back.sites_frac, crystal.sites_frac, atol=1e-6)
  with pytest.raises(Sorry):
    crystal_data.CrystalStore.load(str(tmp_path / "missing.npz"))
  # stores packed in parallel merge by seed; a seed in two of them is refused
  part = str(tmp_path / "part.npz")
  crystal_data.CrystalStore([crystal_data.StoredCrystal(
    seed=1, hall=crystal.hall, cell=crystal.cell, sites_frac=crystal.sites_frac,
    elements=crystal.elements, is_hydrogen=crystal.is_hydrogen)], failed_seeds=[2]).save(part)
  merged = str(tmp_path / "merged.npz")
  crystal_data.main([merged, "--merge", path, part])
  store = crystal_data.CrystalStore.load(merged)
  assert [c.seed for c in store.crystals] == [0, 1, 3] and store.failed_seeds == [2, 7]
  with pytest.raises(Sorry, match="Seed 0"):
    crystal_data.main([merged, "--merge", path, merged])


def test_p1_expansion_is_cctbx_expand_to_p1(thpp_crystal):
  crystal, reference = thpp_crystal
  sites, elements, is_h = crystal.p1_sites_cart()
  p1 = reference.expand_to_p1()
  assert len(sites) == p1.scatterers().size() == 4 * len(crystal.elements)
  frac = sites @ np.linalg.inv(crystal.orthogonalisation()).T
  theirs = np.array(p1.sites_frac())
  d = (frac[:, None, :] - theirs[None]) % 1.0
  d = np.minimum(d, 1 - d)
  assert np.all(np.linalg.norm(d, axis=2).min(axis=1) < 1e-5)


def test_canonical_image_does_not_depend_on_the_copy_stored(thpp_crystal):
  crystal, _ = thpp_crystal
  sites, elements = crystal.image()
  weights = crystal_data.scattering_weights(elements)
  rotations = placement.laue_rotations(crystal.crystal_symmetry())
  first, margin = crystal_data.canonical_rotation(sites, weights, rotations)
  assert margin > 0.01
  canonical = sites @ first.T
  for g in rotations:   # the store could hold any of the Laue copies g.M
    r, m = crystal_data.canonical_rotation(sites @ np.asarray(g).T, weights, rotations)
    assert m == pytest.approx(margin)
    assert np.allclose(sites @ np.asarray(g).T @ r.T, canonical, atol=1e-9)


def test_training_input_is_the_cctbx_patterson_of_the_crystal(tmp_path, thpp_crystal):
  """The fast path on the P1 expansion gives the window that
  patterson.model_input computes from the crystal's |F| in its space group."""
  crystal, reference = thpp_crystal
  path = tmp_path / "store.npz"
  crystal_data.CrystalStore([crystal]).save(str(path))
  params = crystal_params(path)
  geometry = train.Geometry(params)
  store = crystal_data.CrystalStore.load(str(path))
  x, y = crystal_data.training_batch([11], store, params, geometry.input, geometry.output)
  assert x.shape == (1, 1, 32, 32, 32) and y.shape == (1, 1, 48, 48, 48)
  xs = reference.deep_copy_scatterers()
  xs.set_u_iso(value=0.03)
  xs.set_occupancies(1.0)   # the store holds whole atoms (two thpp sites are split)
  f = abs(xs.structure_factors(d_min=2.0, algorithm="direct").f_calc())
  cctbx_input = patterson.model_input_from_params(f, params.patterson)
  assert np.corrcoef(cctbx_input.ravel(), x[0, 0].numpy().ravel())[0, 1] > 0.999
  # the target holds the canonical image: one peak per atom (bonded atoms
  # apart on 0.5 A voxels), no inverses
  target, _, _ = crystal_data.canonical_image(store.crystals[0])
  canonical, best = crystal_data.score_image(target, y[0, 0].numpy(), 0.5,
                                             placement.laue_rotations(xs.crystal_symmetry()))
  assert canonical["n_peaks"] == len(target) and np.all(canonical["distances"] < 0.25)
  assert not np.allclose(y[0, 0].numpy(), np.flip(y[0, 0].numpy()))


def test_training_run_on_a_store(tmp_path, thpp_crystal):
  crystal, _ = thpp_crystal
  shifted = crystal_data.from_structure(measured.load(measured.thpp_set())[1], seed=1)
  path = tmp_path / "store.npz"
  crystal_data.CrystalStore([crystal, shifted]).save(str(path))
  settings = {"train.steps": 3, "train.batch_size": 2, "train.threads": 1, "train.data_workers": 0,
              "train.validation_cases": 2, "train.evaluation_cases": 2, "train.validate_every": 3}
  with pytest.raises(Sorry, match="inverses"):
    train.Trainer(crystal_params(path, tmp_path, **dict(settings, **{"target.inverses": True})))
  card = train.run(crystal_params(path, tmp_path, **settings), progress=False)
  assert card["architecture"]["symmetric_output"] is False and card["architecture"]["upsample"] == 2
  assert card["grid"] == {"input_n": 32, "output_n": 48, "voxel": 1.0, "output_voxel": 0.5}
  assert card["domain"]["space_groups"] == ["P 1 21/n 1"]
  assert card["training_data"]["crystal_store"]["training_crystals"] == 1
  assert card["training_data"]["crystal_store"]["held_out_crystals"] == 1
  assert card["metrics"]["cases"] == 2
  from cctbx_p2a import network
  model = network.load(str(tmp_path / "p2a_model"))
  assert model.net.symmetric is False


def test_pack_store_grows_and_skips_what_it_holds(tmp_path):
  pytest.importorskip("pyxtal")
  pytest.importorskip("rdkit")
  from cctbx_p2a import packing
  params = packing.default_params()
  params.packing.n_atoms = [6, 9]
  path = str(tmp_path / "store.npz")
  store = crystal_data.pack_store(path, [3], params)
  assert [c.seed for c in store.crystals] == [3]
  first = store.crystals[0]
  store = crystal_data.pack_store(path, [3, 4], params)   # seed 3 is not packed again
  assert [c.seed for c in store.crystals] == [3, 4]
  again = crystal_data.CrystalStore.load(path).crystals[0]
  assert np.allclose(again.sites_frac, first.sites_frac, atol=1e-6) and again.hall == first.hall
  # the stored crystal is the packed one: its molecule's non-H atoms, its symmetry
  crystal = packing.generate(4, params)
  stored = crystal_data.CrystalStore.load(path).crystals[1]
  assert stored.hall == crystal.xray_structure.space_group().type().hall_symbol()
  assert int((~stored.is_hydrogen).sum()) == crystal.molecule.n_atoms


def test_pack_store_stops_and_saves_on_sigterm(tmp_path, thpp_crystal, monkeypatch):
  """A background packing job ignores Ctrl-C; kill (SIGTERM) must still
  leave the crystals packed so far in the store, after the one in hand."""
  import os
  import signal
  import types
  from cctbx_p2a import packing
  _, reference = thpp_crystal
  calls = []
  def generate(seed, params=None):
    calls.append(seed)
    if len(calls) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return types.SimpleNamespace(xray_structure=reference, seed=seed, is_hydrogen=None)
  monkeypatch.setattr(packing, "generate", generate)
  path = str(tmp_path / "store.npz")
  before = signal.getsignal(signal.SIGTERM)
  store = crystal_data.pack_store(path, range(10, 20), save_every=100)
  assert calls == [10, 11] and [c.seed for c in store.crystals] == [10, 11]
  assert [c.seed for c in crystal_data.CrystalStore.load(path).crystals] == [10, 11]
  assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back

"""The fast data path gives the network the input the cctbx path gives it."""
import io

import numpy as np
import pytest
from cctbx import miller
from cctbx.array_family import flex
from libtbx.utils import Sorry

torch = pytest.importorskip("torch")  # the [train] extra

from cctbx_p2a import batch_data, patterson, phil, synthetic, train  # noqa: E402


def correlation(a, b):
  return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def varied_params(**extra):
  settings = {"synthetic.random_cell": True, "synthetic.d_min": "1.5 3.0",
              "synthetic.elements": "C N O H", "synthetic.heavy_atom_fraction": 0.5,
              "synthetic.n_atoms": "5 14", "synthetic.u_iso": "0.01 0.05",
              "synthetic.noise": "0 0.2", "synthetic.completeness": "0.8 1"}
  settings.update(extra)
  return phil.extract("train", "synthetic", "patterson", **settings)


def cctbx_structure(case):
  return synthetic.place_in_cell(case.molecule.sites, case.unit_cell, case.molecule.elements,
                                 float(case.molecule.u_iso[0]), rng=np.random.default_rng(3))


def test_a_seed_draws_the_molecule_and_conditions_of_make_case():
  params = varied_params()
  for seed in range(6):
    fast = batch_data.draw_case(seed, params.synthetic)
    slow = synthetic.make_case(seed, params.synthetic, d_min_floor=2.0)
    assert np.allclose(fast.sites_centred, slow.sites_centred)
    assert fast.unit_cell.is_similar_to(slow.xray_structure.unit_cell())
    assert fast.molecule.elements == [s.scattering_type for s in slow.xray_structure.scatterers()]
    assert (fast.d_min, fast.noise, fast.completeness) == (slow.d_min, slow.noise, slow.completeness)


def test_intensities_are_cctbx_structure_factors_with_hydrogens_and_per_atom_u():
  case = batch_data.draw_case(2, varied_params().synthetic)
  rng = np.random.default_rng(0)
  n = len(case.molecule.elements)
  elements = ["H" if i % 3 == 0 else e for i, e in enumerate(case.molecule.elements)]
  molecule = batch_data.Molecule.of(case.molecule.sites + 17.0, elements, rng.uniform(0.01, 0.06, n))
  reflections = batch_data.UniqueReflections([case.unit_cell], [1.7])
  i_fast = batch_data.intensities(reflections, [molecule])[0].numpy()
  xs = synthetic.place_in_cell(molecule.sites, case.unit_cell, elements, 0.02, centroid_frac=(0.1, 0.7, 0.4))
  for scatterer, u in zip(xs.scatterers(), molecule.u_iso):
    scatterer.u_iso = u
  f_calc = miller.build_set(xs.crystal_symmetry(), anomalous_flag=False, d_min=1.7) \
    .structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
  assert f_calc.size() == reflections.member.sum()
  lookup = {tuple(h): k for k, h in enumerate(reflections.hkl.tolist())}
  position = [lookup.get(h, lookup.get(tuple(-x for x in h))) for h in f_calc.indices()]
  i_cctbx = np.abs(f_calc.data().as_numpy_array()) ** 2
  assert np.allclose(i_fast[position], i_cctbx, rtol=1e-4, atol=1e-6 * i_cctbx.max())


def test_noise_free_inputs_match_the_cctbx_path():
  """Whole examples, seed for seed, against synthetic.training_pair (whose
  structure factors come from cctbx's FFT: the only difference left)."""
  for params in (phil.extract("train", "synthetic", "patterson"),
                 varied_params(**{"synthetic.noise": "0 0", "synthetic.completeness": "1 1"})):
    geometry = train.Geometry(params)
    seeds = [train.example_seed(5, 0, k) for k in range(4)]
    x_fast, y_fast = batch_data.training_batch(seeds, params, geometry.input, geometry.output)
    for b, seed in enumerate(seeds):
      x_slow, y_slow = synthetic.training_pair(seed, params.synthetic, params.patterson, params.target,
                                               geometry.output)
      assert correlation(x_fast[b, 0].numpy(), x_slow) >= 0.999
      assert np.allclose(y_fast[b, 0].numpy(), y_slow, atol=1e-5)


def test_noisy_incomplete_truncated_observations_give_the_cctbx_input():
  """The same noisy, incomplete intensities to 1.5 A, cut at input_d_min = 2 A,
  through French-Wilson and the Patterson both ways."""
  params = varied_params()
  geometry = train.Geometry(params)
  for seed in range(3):
    case = batch_data.draw_case(seed, params.synthetic)
    reflections = batch_data.UniqueReflections([case.unit_cell], [1.5])
    i_true = batch_data.intensities(reflections, [case.molecule])
    rng = np.random.default_rng(seed)
    kept = np.flatnonzero(reflections.member[0])
    kept = kept[rng.uniform(size=kept.size) < 0.85]
    i_kept = i_true[0].numpy()[kept]
    sigma = 0.2 * i_kept + 0.2 * i_kept.mean() / 20
    i_obs = i_kept + rng.normal(size=kept.size) * sigma
    # cctbx path: an intensity array through reflections.prepare and patterson
    hkl = reflections.hkl[kept].astype(np.int32)
    indices = flex.miller_index(*(flex.int(np.ascontiguousarray(hkl[:, i])) for i in range(3)))
    xs = cctbx_structure(case)
    observed = miller.array(miller.set(xs.crystal_symmetry(), indices, anomalous_flag=False),
                            data=flex.double(i_obs), sigmas=flex.double(sigma))
    observed.set_observation_type_xray_intensity()
    x_slow = patterson.model_input_from_params(synthetic.as_amplitudes(observed), params.patterson)
    # fast path on the same observations
    f, accepted = batch_data.french_wilson(i_obs, sigma, reflections.d_star_sq[0, kept], case.unit_cell)
    f_sq = np.zeros(reflections.member.shape)
    present = np.zeros(reflections.member.shape, dtype=bool)
    f_sq[0, kept[accepted]] = f[accepted] ** 2
    present[0, kept[accepted]] = True
    obs = batch_data.Observations(torch.as_tensor(f_sq), torch.as_tensor(present))
    x_fast = batch_data.patterson_windows(reflections, obs, geometry.input,
                                          params.patterson.resolution_factor, params.patterson.input_d_min)
    assert correlation(x_fast[0].numpy(), x_slow) >= 0.999
    assert np.abs(x_fast[0].numpy() - x_slow).max() < 1e-3


def test_french_wilson_rejects_and_estimates_as_cctbx():
  case = batch_data.draw_case(1, varied_params().synthetic)
  reflections = batch_data.UniqueReflections([case.unit_cell], [2.0])
  kept = np.flatnonzero(reflections.member[0])
  i_true = batch_data.intensities(reflections, [case.molecule])[0].numpy()[kept]
  rng = np.random.default_rng(1)
  sigma = 0.5 * i_true + 0.5 * i_true.mean() / 20
  i_obs = i_true + rng.normal(size=kept.size) * sigma
  i_obs[::500] = -4.5 * sigma[::500]     # hopeless: French-Wilson rejects these
  hkl = reflections.hkl[kept].astype(np.int32)
  indices = flex.miller_index(*(flex.int(np.ascontiguousarray(hkl[:, i])) for i in range(3)))
  observed = miller.array(miller.set(cctbx_structure(case).crystal_symmetry(), indices, anomalous_flag=False),
                          data=flex.double(i_obs), sigmas=flex.double(sigma))
  observed.set_observation_type_xray_intensity()
  f_cctbx = observed.french_wilson(log=io.StringIO())
  f, accepted = batch_data.french_wilson(i_obs, sigma, reflections.d_star_sq[0, kept], case.unit_cell)
  assert accepted.sum() == f_cctbx.size() < kept.size   # some rejected, the same number
  ours = dict(zip(map(tuple, hkl[accepted].tolist()), f[accepted]))
  f_ours = np.array([ours[h] for h in f_cctbx.indices()])
  assert np.abs(f_ours / f_cctbx.data().as_numpy_array() - 1).max() < 1e-9


def test_targets_are_synthetic_target_grids():
  grid = patterson.GridSpec(n=12, voxel=1.0)
  sites = [np.random.default_rng(k).uniform(-4, 4, (3 + k, 3)) for k in range(3)]
  for inverses in (True, False):
    fast = batch_data.target_grids(sites, grid, sigma=0.6, inverses=inverses).numpy()
    for b, s in enumerate(sites):
      assert np.allclose(fast[b], synthetic.target_grid(s, grid, 0.6, inverses), atol=1e-6)


def test_refusals():
  with pytest.raises(Sorry, match="Unknown element"):
    batch_data.form_factor_gaussian("Qq")
  with pytest.raises(Sorry, match="as many elements"):
    batch_data.Molecule.of(np.zeros((3, 3)), ["C", "C"], 0.02)
  params = phil.extract("train", "synthetic", "patterson", **{"patterson.sharpening": True})
  with pytest.raises(Sorry, match="data_path=cctbx"):
    batch_data.check_supported(params.patterson)

"""The sites stage: sub-voxel peaks, inverse pairs, the hand, refinement."""
import numpy as np
import pytest

from cctbx_p2a import baselines, finishing, patterson, phil, sites, synthetic


def test_peaks_are_found_to_sub_voxel_precision():
  grid = patterson.GridSpec.from_edge(24, 1.0)
  truth = np.array([[1.23, -2.71, 0.44], [-4.9, 3.3, 5.05]])
  m = synthetic.target_grid(truth, grid, sigma=0.6, inverses=False)
  peaks, heights = sites.find_peaks(m, 1.0, threshold=0.1)
  assert len(peaks) == 2
  for t in truth:
    assert np.min(np.linalg.norm(peaks - t, axis=1)) < 0.02
  assert np.all(heights > 0.5)


def test_inverse_pairs_and_centre_atom():
  peaks = np.array([[2, 0, 0], [-2, 0, 0], [0, 3, 1], [0.1, 0.1, 0], [0, -3, -1]], dtype=float)
  pairs, centre = sites.inverse_pairs(peaks, np.ones(5))
  assert len(pairs) == 2 and len(centre) == 1


@pytest.fixture(scope="module")
def case():
  params = phil.extract("synthetic").synthetic
  return synthetic.make_case(11, params)


def _perfect_pairs(case):
  grid = patterson.GridSpec.from_edge(24, 1.0)
  m = synthetic.target_grid(case.sites_centred, grid)
  peaks, heights = sites.find_peaks(m, 1.0)
  return sites.inverse_pairs(peaks, heights)


def test_hand_choice_finds_the_structure_and_wrong_mixtures_score_worse(case):
  pairs, centre = _perfect_pairs(case)
  chosen, score, n_scored = sites.choose_hand(pairs, centre, case.f_obs)
  assert n_scored == 2 ** (len(pairs) - 1)
  xs = sites.structure_from_sites(chosen, case.f_obs.crystal_symmetry(), ["C"] * len(chosen))
  match = baselines.score_against_reference(case.xray_structure, xs, tolerance=0.3)
  assert match["n_matched"] >= len(chosen) - 1
  # one atom swapped for its inverse (part of the molecule in the other hand) explains the data worse
  wrong = chosen.copy()
  wrong[1] = -wrong[1]
  f = case.f_obs
  good = sites.structure_from_sites(chosen, f.crystal_symmetry(), ["C"] * len(chosen))
  bad = sites.structure_from_sites(wrong, f.crystal_symmetry(), ["C"] * len(chosen))
  assert finishing.r1_and_cc(f, good)[1] > finishing.r1_and_cc(f, bad)[1] + 0.05


def test_refinement_and_completion_recover_a_missing_atom(case):
  rng = np.random.default_rng(3)
  start = case.sites_centred[1:] + rng.normal(0, 0.15, case.sites_centred[1:].shape)
  xs = sites.structure_from_sites(start, case.f_obs.crystal_symmetry(), ["C"] * len(start))
  finishing.refine(xs, case.f_obs)
  xs, added = finishing.complete(xs, case.f_obs, n_wanted=10)
  assert added == 1
  finishing.refine(xs, case.f_obs)
  r1, cc, _ = finishing.r1_and_cc(case.f_obs, xs)
  assert r1 < 0.05 and cc > 0.99
  match = baselines.score_against_reference(case.xray_structure, xs, tolerance=0.5)
  assert match["solved"] and match["mean_error_A"] < 0.05

"""The Patterson rotation search (cctbx_p2a.rotation_search): a known
molecule in an unknown orientation is turned back to the crystal's
orientation (modulo the Laue group) and then placed and finished."""
import numpy as np
import pytest

from cctbx_p2a import baselines, compare, measured, placement, rotation_search


@pytest.fixture(scope="module")
def thpp_simulated():
  """|F| computed from thpp's published non-H model (P2_1/n) to 1.6 A, 3 %
  noise: a small crystal whose answer is known exactly."""
  s = measured.thpp_set()
  if s is None:
    pytest.skip("this cctbx has no smtbx thpp data")
  _, reference = measured.load(s)
  from cctbx.array_family import flex
  f = reference.structure_factors(d_min=1.6, algorithm="direct").f_calc().amplitudes()
  data = f.data().as_numpy_array()
  noisy = np.abs(data * (1 + 0.03 * np.random.default_rng(3).normal(size=data.size)))
  f_obs = f.customized_copy(data=flex.double(noisy), sigmas=flex.double(0.03 * data + 1e-3))
  f_obs.set_observation_type_xray_amplitude()
  return f_obs, reference


def test_random_rotations_are_proper_and_laue_angles_are_invariant(thpp_simulated):
  f_obs, _ = thpp_simulated
  r = rotation_search.random_rotations(50, seed=1)
  assert np.allclose(np.einsum("mij,mkj->mik", r, r), np.eye(3), atol=1e-9)
  assert np.allclose(np.linalg.det(r), 1)
  laue = rotation_search.proper_laue(f_obs.crystal_symmetry())
  assert len(laue) == 2   # 2/m: identity and the 2-fold (the mirror acts as the 2-fold on a Patterson)
  for l in placement.laue_rotations(f_obs.crystal_symmetry()):
    assert rotation_search.angle_modulo_laue(r[0], l @ r[0], laue) == pytest.approx(0, abs=1e-4)
  assert rotation_search.angle_modulo_laue(r[0], placement.rotation_about([0, 0, 1], 30) @ r[0],
                                           [np.eye(3)]) == pytest.approx(30, abs=1e-4)


def test_vectors_leave_out_hydrogens_and_long_ones():
  image = placement.MoleculeImage.of([[0, 0, 0], [1.5, 0, 0], [0, 20, 0], [0, 0, 1.0]], ["C", "O", "C", "H"])
  u, w = rotation_search.model_vectors(image, min_length=1.0, max_length=9.0)
  assert len(u) == 1 and w[0] == 6 * 8


def test_search_finds_the_orientation_and_the_placement_matches(thpp_simulated):
  f_obs, reference = thpp_simulated
  image = placement.image_of_structure(reference)
  q = rotation_search.random_rotations(1, seed=11)[0]
  turned = placement.MoleculeImage.of(image.sites_cart @ q.T, image.elements)
  found = rotation_search.search(f_obs, turned, n_samples=8000, seed=0)
  assert found.seconds < 20
  angles = [rotation_search.angle_modulo_laue(q.T, h.rotation, found.laue) for h in found.hits]
  assert angles[0] < 15, angles
  solution = rotation_search.place_known_molecule(f_obs, turned, composition=compare.composition_counts(reference),
                                                  n_rotations=3, n_rigid=1)
  final = baselines.score_against_reference(reference, solution.finished.xray_structure, tolerance=0.5)
  assert final["n_matched"] >= 0.9 * reference.scatterers().size()


def test_at_2_A_short_vectors_are_left_out_and_the_orientation_is_closer():
  """Measured thpp cut to 2.0 A: scoring the 1.0-1.8 A vectors (bonds, on
  the shoulder of the removed origin peak) put the best orientation 16
  degrees from the truth; from 0.9 d_min it is about 6 degrees."""
  s = measured.thpp_set()
  if s is None:
    pytest.skip("this cctbx has no smtbx thpp data")
  observed, reference = measured.load(s)
  f_obs = observed.f_obs.resolution_filter(d_min=2.0)
  params = placement.default_params()
  assert rotation_search.shortest_vector(f_obs, params) == pytest.approx(0.9 * f_obs.d_min())
  image = placement.image_of_structure(reference)
  q = rotation_search.random_rotations(1, seed=5)[0]
  turned = placement.MoleculeImage.of(image.sites_cart @ q.T, image.elements)
  angle = {}
  for shortest in (1.0, rotation_search.shortest_vector(f_obs, params)):
    found = rotation_search.search(f_obs, turned, seed=0, n_keep=3, min_length=shortest)
    angle[shortest] = rotation_search.angle_modulo_laue(q.T, found.hits[0].rotation, found.laue)
  assert angle[1.0] > 12 and min(angle.values()) < 9, angle
  params.placement.rotation_shortest_vector = 1.2
  assert rotation_search.shortest_vector(f_obs, params) == 1.2


def test_a_three_atom_molecule_at_2_A_is_searched_with_its_bonds():
  """Ethylene oxide at 2.0 A has no interatomic vector longer than 0.9 d_min
  (1.43-1.47 A bonds only): the search then scores its bonds rather than
  refusing, and the molecule is placed (P2_1/n, about 35 reflections)."""
  from cctbx import crystal, xray
  from cctbx.array_family import flex
  symmetry = crystal.symmetry(unit_cell=(4.633, 8.400, 6.577, 90, 100.37, 90), space_group_symbol="P 1 21/n 1")
  ring = np.array([[0.0, 0.0, 0.0], [1.47, 0.0, 0.0], [0.735, 1.23, 0.0]])     # C, C, O
  turn = rotation_search.random_rotations(1, seed=2)[0]
  sites = ring @ turn.T + np.array(symmetry.unit_cell().orthogonalize((0.31, 0.22, 0.17)))
  reference = xray.structure(crystal_symmetry=symmetry, scatterers=flex.xray_scatterer([
    xray.scatterer(label, site=symmetry.unit_cell().fractionalize(tuple(x)), u=0.03, scattering_type=e)
    for label, x, e in zip(("C1", "C2", "O1"), sites, ("C", "C", "O"))]))
  f_obs = abs(reference.structure_factors(d_min=2.0, algorithm="direct").f_calc())
  f_obs.set_observation_type_xray_amplitude()
  image = placement.MoleculeImage.of(ring @ rotation_search.random_rotations(1, seed=7)[0].T, ["C", "C", "O"])
  params = placement.default_params()
  assert 0.9 * f_obs.d_min() > 1.47
  assert rotation_search.shortest_vector(f_obs, params, image) == 1.0
  params.placement.rotation_shortest_vector = 1.6   # told: none of its vectors is left
  with pytest.raises(Exception, match="no interatomic vectors between 1.6"):
    rotation_search.search(f_obs, image, n_samples=100, min_length=rotation_search.shortest_vector(f_obs, params, image))
  best = rotation_search.best_placement(f_obs, image, n_rotations=3, n_rigid=3)
  assert best.shortest_vector == 1.0
  score = baselines.score_against_reference(reference, best.start.xray_structure, tolerance=0.5)
  assert score["n_matched"] == 3, score

"""Route (a)'s read-out: the true molecule image of thpp, placed in its cell
by Laue orientations and the translation function, solves the data cut to
2.0 A -- and p2a's verdict still refuses to call it solved on so few data."""
import numpy as np
import pytest

from cctbx_p2a import baselines, compare, measured, placement


@pytest.fixture(scope="module")
def thpp_2A():
  s = measured.thpp_set()
  if s is None:
    pytest.skip("this cctbx has no smtbx thpp data")
  observed, reference = measured.load(s)
  return observed.f_obs.resolution_filter(d_min=2.0), reference


def test_laue_rotations_are_the_patterson_symmetry(thpp_2A):
  f_obs, _ = thpp_2A
  rotations = placement.laue_rotations(f_obs.crystal_symmetry())
  assert len(rotations) == 4                      # 2/m
  assert np.allclose(rotations[0], np.eye(3))
  for r in rotations:
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9)   # Cartesian isometries
  assert sum(np.isclose(np.linalg.det(r), -1) for r in rotations) == 2   # the hand


def test_perturbed_turns_and_jitters_as_asked(thpp_2A):
  _, reference = thpp_2A
  image = placement.image_of_structure(reference)
  assert np.allclose(image.sites_cart.mean(axis=0), 0)
  turned = placement.perturbed(image, rotation_degrees=10, seed=1)
  # the best rotation onto the original is 10 degrees (Kabsch)
  u, _, vt = np.linalg.svd(turned.sites_cart.T @ image.sites_cart)
  r = u @ vt
  assert np.degrees(np.arccos((np.trace(r) - 1) / 2)) == pytest.approx(10, abs=1e-6)
  noisy = placement.perturbed(image, coordinate_rms=0.3, seed=1)
  rms = np.sqrt(((noisy.sites_cart - image.sites_cart) ** 2).sum(axis=1).mean())
  assert 0.15 < rms < 0.45


def test_exact_image_solves_thpp_at_2A(thpp_2A):
  f_obs, reference = thpp_2A
  image = placement.image_of_structure(reference)
  placed = placement.place(f_obs, image)
  assert placed.n_orientations == 4
  best = placed.best
  start = baselines.score_against_reference(reference, best.xray_structure, tolerance=0.5)
  assert start["n_matched"] == reference.scatterers().size()
  # a wrong placement scores clearly worse
  worst = placed.candidates[-1]
  assert worst.cc < best.cc - 0.1
  solution = placement.finish_placed(f_obs, image, composition=compare.composition_counts(reference))
  final = baselines.score_against_reference(reference, solution.finished.xray_structure, tolerance=0.5)
  assert final["n_matched"] >= 0.9 * reference.scatterers().size()
  # right, but 125 reflections for 16 atoms: p2a's verdict does not call it solved
  assert not solution.explained
  assert any("too few" in why for why in solution.reasons)


def test_image_without_sites_refused():
  from libtbx.utils import Sorry
  with pytest.raises(Sorry):
    placement.MoleculeImage.of(np.zeros((0, 3)), [])


@pytest.mark.parametrize("symbol", ["P 1 21/n 1", "C 1 2/c 1", "P 21 21 21"])
def test_rigid_amplitudes_are_cctbx_structure_factors(thpp_2A, symbol):
  """The rigid body's numpy |F_calc| equals cctbx's direct summation for a
  turned, shifted image with its U_iso (centred and acentric groups)."""
  from cctbx import crystal, miller
  f_obs, reference = thpp_2A
  image = placement.image_of_structure(reference)
  cells = {"P 1 21/n 1": f_obs.unit_cell().parameters(), "C 1 2/c 1": (14.0, 14.6, 9.7, 90, 101.0, 90),
           "P 21 21 21": (12.1, 14.6, 9.7, 90, 90, 90)}
  cs = crystal.symmetry(unit_cell=cells[symbol], space_group_symbol=symbol)
  indices = miller.build_set(cs, anomalous_flag=False, d_min=2.0)
  turn = placement.rotation_about([0.3, -0.4, 0.8], 37.0)
  t = (0.21, 0.63, 0.37)
  xs = placement.placed_structure(image, turn, t, cs, 0.045)
  expected = abs(indices.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()).data().as_numpy_array()
  amplitudes = placement.RigidAmplitudes(indices, image.elements)
  got = amplitudes(amplitudes.placed(image, turn, t), 0.045)
  assert np.allclose(got, expected, rtol=1e-6, atol=1e-6 * expected.max())

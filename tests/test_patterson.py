"""The network's input grid (patterson.model_input): the same from a file as
in memory, blind to what a Patterson cannot see (translation, inversion),
and independent of the cell's shape."""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import)

import io

import numpy as np
import pytest
from cctbx import uctbx
from libtbx.utils import multi_out

from cctbx_p2a import patterson, phil, reflections, synthetic

CUBIC = (40, 40, 40, 90, 90, 90)
OBLIQUE = (42, 44, 41, 80, 95, 105)  # shortest lattice vector 41 A: no overlap


@pytest.fixture(scope="module")
def pparams():
  return phil.extract("patterson").patterson


def molecule(seed=7, n=10):
  return synthetic.random_molecule(np.random.default_rng(seed), n)


def grid_of(sites, pparams, cell=CUBIC, centroid_frac=(0.5, 0.5, 0.5), d_min=2.0):
  xs = synthetic.place_in_cell(sites, uctbx.unit_cell(cell), ["C"] * len(sites),
                               0.02, centroid_frac=centroid_frac)
  return grid_of_structure(xs, pparams, d_min)


def grid_of_structure(xs, pparams, d_min=2.0):
  f = xs.structure_factors(d_min=d_min, algorithm="direct").f_calc().amplitudes()
  return patterson.model_input_from_params(
    f.set_observation_type_xray_amplitude(), pparams)


@pytest.mark.parametrize("extra", [[], ["observation=intensities", "noise=0.03 0.03"]],
                         ids=["amplitudes", "noisy_intensities"])
def test_grid_from_simulated_mtz_equals_in_memory(tmp_path, pparams, extra):
  from iotbx.cli_parser import run_program
  from cctbx_p2a.programs import simulate
  logger = multi_out()
  logger.register("log", io.StringIO())
  prefix = str(tmp_path / "case")
  names = run_program(program_class=simulate.Program, logger=logger,
                      args=["seed=5", "output.prefix=" + prefix] + extra)
  from_file = patterson.model_input_from_params(
    reflections.read(names[0]).f_obs, pparams)
  overrides = dict(a.split("=") for a in extra)
  case = synthetic.make_case(5, phil.extract("synthetic", **{
    "synthetic." + k: v for k, v in overrides.items()}).synthetic)
  in_memory = patterson.model_input_from_params(
    synthetic.as_amplitudes(case.f_obs), pparams)
  assert from_file.shape == in_memory.shape == (32, 32, 32)
  # unit RMS grids, origin peak ~45: MTZ's float32 costs ~1e-6
  assert np.abs(from_file - in_memory).max() < 2e-5


def test_blind_to_translation_and_inversion(pparams):
  sites = molecule()
  ref = grid_of(sites, pparams)
  moved = grid_of(sites, pparams, centroid_frac=(0.13, 0.71, 0.42))
  inverted = grid_of(sites * -1, pparams)
  xs = synthetic.place_in_cell(sites, uctbx.unit_cell(CUBIC), ["C"] * 10, 0.02,
                               centroid_frac=(0.3, 0.6, 0.9))
  xs_inv = xs.replace_sites_frac(xs.sites_frac() * -1)  # inverted through 0
  for other in (moved, inverted, grid_of_structure(xs_inv, pparams)):
    assert np.abs(other - ref).max() < 1e-4
  # and the test can tell molecules apart
  assert np.abs(grid_of(molecule(seed=8), pparams) - ref).max() > 1


def test_grid_is_centrosymmetric_about_its_centre(pparams):
  """A Patterson is centrosymmetric; the grid convention (origin between
  voxels) makes r -> -r a flip of every axis."""
  g = grid_of(molecule(), pparams, centroid_frac=(0.21, 0.37, 0.83))
  assert np.abs(np.flip(g) - g).max() < 1e-4
  # the origin peak, the grid's maximum, is on the 8 voxels round the centre
  assert g[15:17, 15:17, 15:17].max() == g.max()


def test_oblique_cell_gives_the_same_cartesian_grid(pparams):
  """Same molecule in a cubic and a triclinic cell.  The grids differ only
  by interpolation of different cctbx map grids (largest at the sharp origin
  peak) and by how each reciprocal lattice samples the 2 A sphere.  Measured
  over six molecules: correlation 0.9981-0.9984, max |diff| 1.48-1.61 (3.5 %
  of the origin peak, ~45), max |diff| off the 8 central voxels 0.87-0.96,
  RMS diff 0.056-0.061.  The tolerances below leave ~50 % margin; a different
  molecule gives a correlation of ~0.6 and a max |diff| of ~13."""
  sites = molecule()
  a = grid_of(sites, pparams, cell=CUBIC)
  b = grid_of(sites, pparams, cell=OBLIQUE)
  diff = np.abs(a - b)
  assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.995
  assert diff.max() < 0.05 * a.max()
  off_origin = diff.copy()
  off_origin[15:17, 15:17, 15:17] = 0
  assert off_origin.max() < 1.5
  assert np.sqrt((diff * diff).mean()) < 0.1
  c = grid_of(molecule(seed=8), pparams, cell=OBLIQUE)
  assert np.corrcoef(a.ravel(), c.ravel())[0, 1] < 0.9


def test_data_finer_than_input_d_min_give_the_input_of_data_cut_there(pparams):
  """1 A data and the same data stopped at input_d_min make one network input,
  so the network needs to know one resolution regime only above it."""
  xs = synthetic.place_in_cell(molecule(), uctbx.unit_cell(CUBIC), ["C"] * 10, 0.02,
                               centroid_frac=(0.5, 0.5, 0.5))
  fine = grid_of_structure(xs, pparams, d_min=1.0)
  at_cut = grid_of_structure(xs, pparams, d_min=pparams.input_d_min)
  assert np.allclose(fine, at_cut, atol=2e-3)  # a few reflections right at the cut differ
  uncut = patterson.model_input_from_params(
    xs.structure_factors(d_min=1.0, algorithm="direct").f_calc().amplitudes()
    .set_observation_type_xray_amplitude(),
    phil.extract("patterson", **{"patterson.input_d_min": 0}).patterson)
  assert not np.allclose(fine, uncut, atol=1e-2)


def test_the_window_read_as_an_atom_map_shows_the_interatomic_vectors(pparams):
  """patterson.window_as_atom_map, the solve's fallback start and the
  p2a_patterson control: the origin peak removed, the background at 0, the
  top at an atom map's 0.5, and the peaks where the vectors are (a pair of
  atoms 3.5 A apart: at +-3.5 A along their bond), cropped to `edge`."""
  from cctbx_p2a import sites
  pair = np.array([[-1.75, 0.0, 0.0], [1.75, 0.0, 0.0]])
  grid = grid_of(pair, pparams)
  atom_map = patterson.window_as_atom_map(grid, pparams.voxel, edge=16.0)
  assert atom_map.shape == (int(round(16.0 / pparams.voxel)),) * 3
  assert atom_map.max() == pytest.approx(0.5) and atom_map.min() == 0.0
  c = patterson.grid_coordinates(atom_map.shape[0], pparams.voxel)
  r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
  assert atom_map[r <= 1.5].max() < 1e-3  # the origin peak is gone: set to the background
  peaks, heights = sites.find_peaks(atom_map, pparams.voxel, threshold=0.1)
  assert len(peaks) == 2, (peaks, heights)
  assert np.allclose(sorted(peaks[:, 0]), [-3.5, 3.5], atol=0.3) and np.abs(peaks[:, 1:]).max() < 0.3

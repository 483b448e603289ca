"""Synthetic cases: the paper's recipe for molecules, its unambiguous target,
and seeded reproducibility."""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import)

import numpy as np
import pytest
from libtbx.utils import Sorry

from cctbx_p2a import patterson, phil, synthetic


def pair_distances(sites):
  d = sites[:, None, :] - sites[None, :, :]
  d = np.sqrt((d * d).sum(axis=-1))
  return d[np.triu_indices(len(sites), 1)]


@pytest.mark.parametrize("n, extent, min_distance", [(10, 6.125, 3.0), (4, 2.0, 1.5),
                                                     (20, 8.0, 2.5)])
def test_random_molecule_guarantees(n, extent, min_distance):
  rng = np.random.default_rng(0)
  for _ in range(30):
    sites = synthetic.random_molecule(rng, n, extent, min_distance)
    assert sites.shape == (n, 3)
    assert np.abs(sites.mean(axis=0)).max() < 1e-12  # centroid at the origin
    assert pair_distances(sites).min() >= min_distance - 1e-12
    # drawn within +-extent, so the spread per axis is at most 2*extent, and
    # after centring |x| <= 2*extent*(n-1)/n
    assert (sites.max(axis=0) - sites.min(axis=0)).max() <= 2 * extent + 1e-12
    assert np.abs(sites).max() <= 2 * extent * (n - 1) / n + 1e-12


def test_random_molecule_refuses_impossible_packing():
  with pytest.raises(Sorry, match="min_distance"):
    synthetic.random_molecule(np.random.default_rng(0), 30, 1.0, 3.0, max_tries=2)


def test_target_is_symmetric_under_inversion():
  sites = synthetic.random_molecule(np.random.default_rng(3), 10)
  grid = patterson.GridSpec.from_edge(24, 1.0)
  y = synthetic.target_grid(sites, grid)
  assert y.shape == (24, 24, 24)
  assert np.abs(np.flip(y) - y).max() < 1e-6
  assert y.max() == pytest.approx(0.5, abs=0.1)  # atoms + inverses, halved
  # without the inverses it is not: the test can fail
  y1 = synthetic.target_grid(sites, grid, inverses=False)
  assert np.abs(np.flip(y1) - y1).max() > 0.1
  assert np.allclose((y1 + np.flip(y1)) / 2, y, atol=1e-6)


def test_make_case_is_seeded_and_the_paper_case_by_default():
  params = phil.extract("synthetic").synthetic
  a, b = synthetic.make_case(4, params), synthetic.make_case(4, params)
  c = synthetic.make_case(5, params)
  xs = a.xray_structure
  assert xs.scatterers().size() == 10
  assert set(sc.scattering_type for sc in xs.scatterers()) == {"C"}
  assert xs.unit_cell().parameters() == pytest.approx((40, 40, 40, 90, 90, 90))
  assert str(xs.space_group_info()) == "P 1"
  assert (a.d_min, a.noise, a.completeness) == (2.0, 0.0, 1.0)
  assert a.f_obs.is_xray_amplitude_array()
  assert np.array_equal(a.sites_centred, b.sites_centred)
  assert list(a.f_obs.data()) == list(b.f_obs.data())
  assert not np.allclose(a.sites_centred, c.sites_centred)
  # the structure holds the centred molecule, wherever it was placed
  cart = xs.sites_cart().as_numpy_array()
  assert np.allclose(cart - cart.mean(axis=0), a.sites_centred, atol=1e-9)

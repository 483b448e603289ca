"""The pictures: what they must show for a person to read them right."""
from types import SimpleNamespace

import numpy as np
from cctbx import crystal, xray
from cctbx.array_family import flex

from cctbx_p2a import patterson, plots

METHODS = ["p2a", "charge_flipping", "tangent_formula"]


def ring_across_the_cell_face():
  """A six-ring with a two-atom tail (C-C 1.4-1.5 A, C-S 1.4 A) whose atoms
  lie on both sides of x = 0 of a 30 A cell: wrapped into the cell, half the
  molecule sits 30 A away from the other half."""
  cs = crystal.symmetry(unit_cell=(30, 30, 30, 90, 90, 90), space_group_symbol="P1")
  ring = [(1.4 * np.cos(t), 1.4 * np.sin(t), 0.3 * np.cos(t)) for t in np.arange(6) * np.pi / 3]
  cart = ring + [(2.9, 0.0, 0.0), (3.6, 1.2, 0.0)]
  scatterers = flex.xray_scatterer()
  for k, (x, y, z) in enumerate(cart):
    site = tuple(f % 1.0 for f in cs.unit_cell().fractionalize((x + 0.5, y + 15, z + 15)))
    element = "S" if k == 7 else "C"
    scatterers.append(xray.scatterer(label="%s%d" % (element, k + 1), site=site, u=0.02,
                                     scattering_type=element))
  return xray.structure(crystal_symmetry=cs, scatterers=scatterers)


def test_a_molecule_cut_by_the_cell_face_is_drawn_whole_with_its_bonds():
  xs = ring_across_the_cell_face()
  wrapped = np.array([xs.unit_cell().orthogonalize(sc.site) for sc in xs.scatterers()])
  assert np.ptp(wrapped[:, 0]) > 20  # the input really is cut by the face
  xyz, bonds = plots.molecule_cartesian(xs)
  assert np.ptp(xyz[:, 0]) < 7 and np.allclose(xyz.mean(axis=0), 0, atol=1e-9)
  assert sorted(bonds) == [(0, 1), (0, 5), (0, 6), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7)]


def network_like_result():
  """A Patterson window with a dominant origin peak and a weaker vector."""
  n, v = 32, 1.0
  grid = np.zeros((n, n, n), np.float32)
  grid[15:17, 15:17, 15:17] = 45.0                  # origin: the 8 central voxels
  grid[20, 16, 16] = 9.0                             # a vector 4.5 A out
  atom_map = np.zeros((24, 24, 24), np.float32)
  atom_map[12, 12, 12] = 0.5
  xs = ring_across_the_cell_face()
  return SimpleNamespace(xray_structure=xs, patterson_grid=grid, atom_map=atom_map, voxel=v,
                         f_obs=None, r1=0.05, cc=0.99, solved=False, start="network")


def test_patterson_colour_scale_stops_below_the_origin_peak():
  result = network_like_result()
  assert plots.patterson_colour_limit(result.patterson_grid, 1.0) == 9.0
  fig = plots.solve_plot(result)
  patterson_ax, map_ax, sites_ax = fig.axes[:3]  # then their colour bars
  assert patterson_ax.images[0].get_clim()[1] == 9.0
  assert "origin peak clipped" in patterson_ax.get_title()
  assert len(fig.axes) == 6  # three panels, each with its colour bar
  assert [a.get_ylabel() for a in fig.axes[3:]] == ["Patterson (normalised)", "atom map", "z (A)"]
  assert len(sites_ax.lines) == 8  # one line per bond
  assert "8 atoms, 8 bonds" in sites_ax.get_title()
  assert fig._suptitle.get_text() == "cctbx_p2a: NOT SOLVED"
  assert map_ax.images


def test_without_a_network_map_the_patterson_is_made_from_the_data(tmp_path):
  xs = ring_across_the_cell_face()
  result = SimpleNamespace(xray_structure=xs, patterson_grid=None, atom_map=None, voxel=None,
                           f_obs=abs(xs.structure_factors(d_min=1.5).f_calc()), r1=0.05, cc=0.99,
                           solved=True, start="charge_flipping")
  fig = plots.solve_plot(result)
  assert "not used: charge_flipping start" in fig.axes[0].get_title()
  assert plots.solve_figure(result, str(tmp_path / "s.png")) and (tmp_path / "s.png").stat().st_size


def summary(method, d_min, rate, seconds, cases=20):
  return dict(method=method, d_min=d_min, cases=cases, success_rate=rate, median_time_s=seconds)


def test_one_sweep_point_shows_every_method_side_by_side_with_title_and_count(tmp_path):
  rows = [summary("p2a", 2.0, 0.95, 3.0), summary("charge_flipping", 2.0, 0.0, 12.0),
          summary("tangent_formula", 2.0, 0.0, 9.0)]
  fig = plots.sweep_plot(rows, "d_min", methods=METHODS, title="p2a.compare, paper suite")
  bars = fig.axes[0].patches
  assert len(bars) == 3
  assert len({round(b.get_x(), 6) for b in bars}) == 3                    # side by side
  assert [round(b.get_height(), 6) for b in bars] == [95.0, 0.0, 0.0]
  assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == METHODS
  assert fig._suptitle.get_text() == "p2a.compare, paper suite; 20 cases per method"
  assert plots.sweep_figure(rows, "d_min", str(tmp_path / "c.png"), methods=METHODS)


def test_several_sweep_points_keep_equal_methods_apart():
  rows = [summary(m, d, 0.0, 1.0) for m in METHODS for d in (1.0, 2.0, 3.0)]
  fig = plots.sweep_plot(rows, "d_min", methods=METHODS)
  xs = [tuple(line.get_xdata()) for line in fig.axes[0].lines]
  assert len(xs) == 3 and len(set(xs)) == 3  # same values, markers not on top of each other
  assert "20 cases per point" in fig._suptitle.get_text()


def test_the_grid_the_plot_assumes_is_the_pattersons():
  """solve_plot's origin test uses patterson.grid_coordinates: the origin lies
  between the 8 central voxels of an even grid."""
  c = patterson.grid_coordinates(32, 1.0)
  assert c[15] == -0.5 and c[16] == 0.5

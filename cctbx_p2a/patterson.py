"""Patterson stage: amplitudes -> cctbx Patterson synthesis -> the network's grid.

One function, :func:`model_input`, makes the network's input for training and
for solving, so the two can never drift apart.  The Patterson synthesis is
cctbx's (space-group aware, full unit cell); it is then interpolated onto a
cubic Cartesian window centred on the Patterson origin.  Working in Cartesian
Angstrom makes the input independent of the cell's shape: a non-orthogonal
cell gives the same window as an orthogonal one holding the same molecule.

Grid convention (shared with the output grid, see :func:`grid_coordinates`):
voxel centres sit at (i - (n-1)/2) * voxel, so the origin lies between voxels
and the inversion r -> -r is exactly a flip of every axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cctbx import maptbx
from libtbx.utils import Sorry


@dataclass(frozen=True)
class GridSpec:
  """A cubic Cartesian grid: n voxels of edge `voxel` A along each axis."""
  n: int
  voxel: float

  @property
  def edge(self):
    return self.n * self.voxel

  @classmethod
  def from_edge(cls, edge, voxel):
    n = int(round(edge / voxel))
    if n < 4 or abs(n * voxel - edge) > 1e-6 * max(edge, 1):
      raise Sorry("Grid edge %.3f A is not a whole number (>= 4) of %.3f A voxels: "
                  "choose box_edge as a multiple of voxel." % (edge, voxel))
    return cls(n=n, voxel=float(voxel))

  def coordinates(self):
    return grid_coordinates(self.n, self.voxel)

  def points(self):
    """(n**3, 3) Cartesian voxel centres, C order (x slowest)."""
    c = self.coordinates()
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def grid_coordinates(n, voxel):
  """Voxel-centre coordinates (A) along one axis; symmetric about 0."""
  return (np.arange(n) - (n - 1) / 2.0) * voxel


def on_atom_map_scale(y):
  """A map with its median (the background) at 0, negatives at 0 and its
  highest point at 0.5, the height of a trained network's atoms, so that the
  peak picker's absolute threshold reads it as it reads an atom map."""
  y = np.clip(y - np.median(y), 0, None)
  return (0.5 * y / max(float(y.max()), 1e-12)).astype(np.float32)


def window_as_atom_map(window, voxel, edge, origin_radius=1.5):
  """The Patterson window (the network's input, centred on the origin) read
  as an atom map: its central cube of edge `edge` A (the atom map's window),
  the origin peak within origin_radius A removed, on an atom map's scale.
  Its peaks are interatomic vectors, not atoms: a start that needs no
  network, for the solve's fallback and the p2a_patterson control."""
  n = window.shape[0]
  m = min(n, max(int(round(edge / voxel)), 1))
  k = (n - m) // 2
  y = np.array(window[k:k + m, k:k + m, k:k + m], dtype=np.float32)
  c = grid_coordinates(m, voxel)
  r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
  y[r2 <= origin_radius ** 2] = np.median(y)
  return on_atom_map_scale(y)


def patterson_synthesis(f_obs, resolution_factor=0.25, sharpening=False,
                        origin_peak_removal=False):
  """cctbx Patterson map of amplitudes over the full unit cell (numpy array).

  Uses the space group's symmetry; Bijvoet mates must already be averaged.
  """
  if f_obs.anomalous_flag():
    f_obs = f_obs.average_bijvoet_mates()
  f = f_obs.customized_copy(sigmas=None)
  pmap = f.patterson_map(
    resolution_factor=resolution_factor,
    symmetry_flags=maptbx.use_space_group_symmetry,
    sharpening=sharpening,
    origin_peak_removal=origin_peak_removal)
  return pmap.real_map_unpadded(in_place=True).as_numpy_array()  # pmap is ours alone


def interpolate_periodic(cell_map, unit_cell, sites_cart):
  """Trilinear interpolation of a periodic map sampled over the unit cell
  (cell_map[i,j,k] at fractional (i/nx, j/ny, k/nz)) at Cartesian sites."""
  frac_matrix = np.array(unit_cell.fractionalization_matrix()).reshape(3, 3)
  frac = sites_cart @ frac_matrix.T
  shape = np.array(cell_map.shape)
  u = frac * shape
  i0 = np.floor(u).astype(np.int64)
  w = u - i0
  result = np.zeros(len(sites_cart))
  for dx in (0, 1):
    wx = w[:, 0] if dx else 1 - w[:, 0]
    ix = (i0[:, 0] + dx) % shape[0]
    for dy in (0, 1):
      wy = w[:, 1] if dy else 1 - w[:, 1]
      iy = (i0[:, 1] + dy) % shape[1]
      for dz in (0, 1):
        wz = w[:, 2] if dz else 1 - w[:, 2]
        iz = (i0[:, 2] + dz) % shape[2]
        result += wx * wy * wz * cell_map[ix, iy, iz]
  return result


def normalise(grid):
  """The one normalisation of the network input: zero mean, unit RMS over the
  window.  It removes the unknown scale of F_obs and the number of atoms' effect
  on the overall level."""
  grid = grid - grid.mean()
  rms = np.sqrt((grid * grid).mean())
  if not np.isfinite(rms) or rms == 0:
    raise Sorry("The Patterson map is flat (all amplitudes zero?): nothing to solve.")
  return (grid / rms).astype(np.float32)


def model_input(f_obs, grid, resolution_factor=0.25, sharpening=False,
                origin_peak_removal=False):
  """The network input for amplitudes `f_obs`: the normalised Patterson on
  `grid` (a GridSpec), centred on the Patterson origin, shape (n, n, n)."""
  cell_map = patterson_synthesis(f_obs, resolution_factor=resolution_factor,
                                 sharpening=sharpening,
                                 origin_peak_removal=origin_peak_removal)
  values = interpolate_periodic(cell_map, f_obs.unit_cell(), grid.points())
  return normalise(values.reshape(grid.n, grid.n, grid.n))


def cut_for_input(f_obs, input_d_min):
  """f_obs without reflections finer than input_d_min (none cut when 0 or
  when the data stop earlier).  Returns (amplitudes, d_min cut at or None)."""
  if input_d_min and f_obs.d_min() < input_d_min - 0.01:
    return f_obs.resolution_filter(d_min=input_d_min), input_d_min
  return f_obs, None


def model_input_from_params(f_obs, params):
  """model_input with the `patterson` PHIL scope (box_edge, voxel, input_d_min, ...)."""
  grid = GridSpec.from_edge(params.box_edge, params.voxel)
  f_obs, _ = cut_for_input(f_obs, params.input_d_min)
  return model_input(f_obs, grid, resolution_factor=params.resolution_factor,
                     sharpening=params.sharpening,
                     origin_peak_removal=params.origin_peak_removal)

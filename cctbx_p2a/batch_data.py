"""Fast data stage: training examples made a batch at a time with tensor algebra.

Why: the cctbx path (:func:`cctbx_p2a.synthetic.training_pair`) builds an
xray.structure, structure factors, French-Wilson amplitudes, a Patterson FFT
and an interpolation for every case, one at a time.  That is right for a
user's data and too slow to feed a network.  This module computes the same
network input for a whole batch in torch (CPU or GPU):

1. **Reflections.**  The unique P1 reflections (one of each Friedel pair, no
   000) out to each case's resolution, held inside one index box common to the
   batch (:class:`UniqueReflections`).
2. **Intensities.**  |F|^2 by the direct sum over atoms with cctbx's own form
   factors (its default n_gaussian table) and isotropic Debye-Waller factors;
   the Patterson does not see where the molecule sits, so no cell placement is
   needed (:func:`intensities`).
3. **Observation.**  Completeness (reflections dropped at random), Gaussian
   noise on intensities with the sigma model of
   :func:`cctbx_p2a.synthetic.simulated_data`, and French-Wilson amplitudes
   for noisy data or intensities, exactly as that function and
   ``reflections.prepare`` do (:func:`observe`, :func:`french_wilson`).
4. **Patterson window.**  cctbx samples the Patterson on its FFT grid and
   ``patterson.interpolate_periodic`` interpolates it trilinearly onto the
   Cartesian window.  Trilinear interpolation of a Fourier series is itself a
   sum over the reflections, and it factorises axis by axis because the
   fractionalisation matrix is triangular; so the interpolated values are
   summed directly on the window, three small contractions instead of a
   full-cell FFT (:func:`patterson_windows`).  The FFT grid is the one cctbx
   would choose for the data (maptbx.crystal_gridding), so the result is
   cctbx's, not merely close to it.
5. **Targets.**  The atoms and their inverses as Gaussians on the output grid,
   as :func:`cctbx_p2a.synthetic.target_grid` (:func:`target_grids`).

Anything that gives Cartesian sites, element symbols (H included) and U_iso
per molecule feeds it (:class:`Molecule`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from libtbx.utils import Sorry

from cctbx_p2a import synthetic


@dataclass
class Molecule:
  """A molecule as the data stage needs it: Cartesian sites (n, 3) in A (any
  origin), element symbols, and U_iso (A^2) per atom."""
  sites: np.ndarray
  elements: list
  u_iso: np.ndarray

  @classmethod
  def of(cls, sites, elements, u_iso):
    sites = np.asarray(sites, dtype=float).reshape(-1, 3)
    elements = [str(e) for e in elements]
    u = np.broadcast_to(np.asarray(u_iso, dtype=float), (len(sites),)).copy() \
      if np.ndim(u_iso) == 0 else np.asarray(u_iso, dtype=float)
    if len(elements) != len(sites) or len(u) != len(sites) or len(sites) == 0:
      raise Sorry("A molecule needs as many elements (%d) and U_iso values (%d) as sites (%d), "
                  "and at least one atom." % (len(elements), len(u), len(sites)))
    return cls(sites=sites, elements=elements, u_iso=u)


# --------------------------------------------------------------------------
# form factors

_GAUSSIANS = {}


def form_factor_gaussian(element):
  """(a, b, c) of the form factor f(d*^2) = sum a exp(-b d*^2/4) + c that
  xray.structure uses by default (n_gaussian table), so both paths agree."""
  if element not in _GAUSSIANS:
    from cctbx import crystal, xray
    from cctbx.array_family import flex
    try:
      xs = xray.structure(
        crystal_symmetry=crystal.symmetry(unit_cell=(10, 10, 10, 90, 90, 90), space_group_symbol="P 1"),
        scatterers=flex.xray_scatterer([xray.scatterer("X", (0, 0, 0), scattering_type=element)]))
      g = xs.scattering_type_registry().gaussian_not_optional(element)
    except (RuntimeError, ValueError) as e:
      raise Sorry("Unknown element %r for form factors (%s): use symbols such as C, N, O, H, S, Cl."
                  % (element, e))
    _GAUSSIANS[element] = (np.array(g.array_of_a()), np.array(g.array_of_b()), float(g.c()))
  return _GAUSSIANS[element]


# --------------------------------------------------------------------------
# reflections

def fractionalization(unit_cell):
  return np.array(unit_cell.fractionalization_matrix()).reshape(3, 3)


class UniqueReflections:
  """The unique P1 reflections of a batch: for case b, every h with
  d*(h) <= 1/d_min[b] in the half space l > 0, (l = 0, k > 0), (l = k = 0,
  h > 0) -- one of each Friedel pair, as cctbx's P1 asymmetric unit holds.

  All cases share one index box h in [-m1, m1] x [-m2, m2] x [0, m3]; `index`
  lists the box positions that any case uses, `member[b]` says which of them
  case b has."""

  def __init__(self, unit_cells, d_min, device="cpu"):
    self.unit_cells = list(unit_cells)
    self.device = torch.device(device)
    d_min = np.asarray(d_min, dtype=float).reshape(-1)
    if len(d_min) != len(self.unit_cells) or np.any(d_min <= 0):
      raise Sorry("Give one positive d_min per unit cell (got %s for %d cells)."
                  % (list(d_min), len(self.unit_cells)))
    self.d_min = d_min
    self.frac = np.stack([fractionalization(uc) for uc in self.unit_cells])    # (B, 3, 3)
    lengths = np.array([uc.parameters()[:3] for uc in self.unit_cells])
    m = np.floor(lengths / d_min[:, None] + 1e-9).max(axis=0).astype(int)       # |h_i| <= a_i / d
    self.box_shape = (2 * m[0] + 1, 2 * m[1] + 1, m[2] + 1)
    self.m = m
    hkl, half_index, half_hkl = _half_box(tuple(int(v) for v in m))
    per_cell = {}    # a batch of one cell (the paper's case) computes d*^2 once
    for uc, d in zip(self.unit_cells, d_min):
      if (uc.parameters(), d) not in per_cell:
        per_cell[uc.parameters(), d] = _d_star_sq(uc, half_hkl, d)
    d_star_sq = np.stack([per_cell[uc.parameters(), d] for uc, d in zip(self.unit_cells, d_min)])
    in_sphere = d_star_sq <= (1.0 / d_min[:, None]) ** 2
    used = in_sphere.any(axis=0)
    self.index = half_index[used]                       # positions in the flattened box
    self.hkl = hkl[self.index]                          # (N, 3)
    self.d_star_sq = d_star_sq[:, used]                 # (B, N)
    self.member = in_sphere[:, used]                    # (B, N)

  @property
  def size(self):
    return len(self.unit_cells)


_BOXES = {}


def _half_box(m):
  """All indices of the box [-m1, m1] x [-m2, m2] x [0, m3] (box order), the
  positions of the half space l > 0, (l = 0, k > 0), (l = k = 0, h > 0), and
  its indices (float)."""
  if m not in _BOXES:
    h1, h2, h3 = np.meshgrid(np.arange(-m[0], m[0] + 1), np.arange(-m[1], m[1] + 1),
                             np.arange(0, m[2] + 1), indexing="ij")
    hkl = np.stack([h1.ravel(), h2.ravel(), h3.ravel()], axis=1)
    half = (hkl[:, 2] > 0) | ((hkl[:, 2] == 0) & (hkl[:, 1] > 0)) | \
           ((hkl[:, 2] == 0) & (hkl[:, 1] == 0) & (hkl[:, 0] > 0))
    if len(_BOXES) > 64:
      _BOXES.clear()
    half_index = np.flatnonzero(half)
    _BOXES[m] = (hkl, half_index, hkl[half_index].astype(float))
  return _BOXES[m]


def _d_star_sq(unit_cell, hkl, d_min):
  """d*^2 of indices hkl (N, 3); where it ties with 1/d_min^2 to 1e-9 it is
  cctbx's own value, so that a reflection exactly at d_min is in or out as in
  miller.build_set (it decides the FFT grid of the Patterson)."""
  s = hkl @ fractionalization(unit_cell)
  d_star_sq = (s * s).sum(axis=1)
  near = np.flatnonzero(np.abs(d_star_sq * d_min * d_min - 1) < 1e-9)
  if near.size:
    from cctbx.array_family import flex
    tied = hkl[near].astype(np.int32)
    indices = flex.miller_index(*(flex.int(np.ascontiguousarray(tied[:, i])) for i in range(3)))
    d_star_sq[near] = unit_cell.d_star_sq(indices).as_numpy_array()
  return d_star_sq


def intensities(reflections, molecules):
  """|F(h)|^2 of each molecule (B, N) as a float64 torch tensor on the
  reflections' device; zero outside each case's own sphere.

  Atoms of one element and one U_iso share a scattering factor, so
  F(h) = sum_t g_t(h) S_t(h) with S_t(h) = sum_{atoms of type t} exp(2 pi i h.x).
  exp(2 pi i h.x) is a product of one factor per index, so S_t over the whole
  index box is one batched matrix product of (h, k) factors with l factors:
  no sine or cosine per reflection, and BLAS does the sum over atoms."""
  r = reflections
  dev = r.device
  if len(molecules) != r.size:
    raise Sorry("%d molecules for %d unit cells." % (len(molecules), r.size))
  n_refl = r.hkl.shape[0]
  types = [sorted(set(zip(m.elements, np.round(m.u_iso, 6)))) for m in molecules]
  n_types = max(len(t) for t in types)
  n_atoms = max(len(m.elements) for m in molecules)
  frac_sites = np.zeros((r.size, n_atoms, 3))
  one_hot = np.zeros((r.size, n_types, n_atoms))   # atom -> its type (padding atoms: none)
  for b, m in enumerate(molecules):
    frac = m.sites @ r.frac[b].T
    frac_sites[b, :len(m.elements)] = frac - np.round(frac)   # a lattice translation changes no F
    for a, key in enumerate(zip(m.elements, np.round(m.u_iso, 6))):
      one_hot[b, types[b].index(key), a] = 1.0
  dss = torch.as_tensor(r.d_star_sq, dtype=torch.float32, device=dev)
  scattering = torch.zeros(r.size, n_types, n_refl, dtype=torch.float32, device=dev)
  form_factors = {}    # per cell and element: a batch of one cell evaluates each once
  for b, case_types in enumerate(types):
    cell = r.unit_cells[b].parameters()
    for t, (element, u) in enumerate(case_types):
      if (cell, element) not in form_factors:
        a, bb, c = form_factor_gaussian(element)
        form_factors[cell, element] = c + sum(float(ai) * torch.exp(-float(bi) / 4.0 * dss[b])
                                              for ai, bi in zip(a, bb))
      scattering[b, t] = form_factors[cell, element] * torch.exp(-2 * math.pi ** 2 * float(u) * dss[b])
  m1, m2, m3 = (int(v) for v in r.m)
  xyz = torch.as_tensor(frac_sites * (2 * math.pi), device=dev)                # (B, A, 3), float64

  def factors(axis, lo, hi):   # exp(2 pi i h x_axis) for h in [lo, hi]: (B, A, n) as (re, im) float32
    phase = xyz[:, :, axis, None] * torch.arange(lo, hi + 1, device=dev, dtype=torch.float64)
    return torch.cos(phase).float(), torch.sin(phase).float()
  e1, e2, e3 = factors(0, -m1, m1), factors(1, -m2, m2), factors(2, 0, m3)
  n1, n2, n3 = 2 * m1 + 1, 2 * m2 + 1, m3 + 1
  e12 = [(e1[0][:, :, :, None] * e2[0][:, :, None, :] - e1[1][:, :, :, None] * e2[1][:, :, None, :]),
         (e1[0][:, :, :, None] * e2[1][:, :, None, :] + e1[1][:, :, :, None] * e2[0][:, :, None, :])]
  e12 = [part.reshape(r.size, n_atoms, n1 * n2).transpose(1, 2) for part in e12]   # (B, n1 n2, A)
  typed = torch.as_tensor(one_hot, dtype=torch.float32, device=dev)
  w = [(typed[:, :, :, None] * part[:, None]).permute(0, 2, 1, 3).reshape(r.size, n_atoms, n_types * n3)
       for part in e3]                                                             # (B, A, T n3)
  s_re = torch.matmul(e12[0], w[0]) - torch.matmul(e12[1], w[1])                   # (B, n1 n2, T n3)
  s_im = torch.matmul(e12[0], w[1]) + torch.matmul(e12[1], w[0])
  index = torch.as_tensor(r.index, device=dev)

  def at_reflections(part):    # box (B, n1 n2, T, n3) -> (B, T, N)
    part = part.view(r.size, n1 * n2, n_types, n3).permute(0, 2, 1, 3).reshape(r.size, n_types, -1)
    return part[:, :, index]
  s_re, s_im = at_reflections(s_re), at_reflections(s_im)
  f_re = (scattering * s_re).sum(1).double()
  f_im = (scattering * s_im).sum(1).double()
  i_true = f_re * f_re + f_im * f_im
  return i_true * torch.as_tensor(r.member, device=dev)


# --------------------------------------------------------------------------
# observation: completeness, noise, French-Wilson

@dataclass
class Observations:
  """What a data set holds per reflection of the batch (all (B, N)):
  amplitudes squared for the Patterson and which reflections are in it."""
  f_sq: torch.Tensor
  present: torch.Tensor


def observe(reflections, i_true, rngs, noise, completeness, observation="amplitudes"):
  """Simulated observations as in synthetic.simulated_data, for each case:
  drop reflections at random (keep with probability completeness[b]); with
  noise, I_obs = I + N(0, sigma^2), sigma = noise*I + noise*mean(I)/20; then
  amplitudes as the cctbx path makes them: French-Wilson for noisy data and
  for intensities (sigma = 2 % of I for noise-free intensities), |F| itself
  for noise-free amplitudes.  French-Wilson may reject hopeless reflections,
  which then leave the data as they do in cctbx.

  The random draws use each case's numpy Generator, one case at a time: they
  are cheap next to the sums, and keep example k the same whatever the batch."""
  r = reflections
  noise = np.broadcast_to(np.asarray(noise, dtype=float), (r.size,))
  completeness = np.broadcast_to(np.asarray(completeness, dtype=float), (r.size,))
  i_np = i_true.detach().cpu().numpy()
  f_sq = np.zeros_like(i_np)
  present = np.zeros(i_np.shape, dtype=bool)
  for b in range(r.size):
    rng = rngs[b]
    sel = np.flatnonzero(r.member[b])
    if completeness[b] < 1:
      sel = sel[rng.uniform(size=sel.size) < completeness[b]]
    i_b = i_np[b, sel]
    if noise[b] > 0:
      sigma = noise[b] * i_b + noise[b] * i_b.mean() / 20.0
      i_obs = i_b + rng.normal(size=i_b.size) * sigma
    elif observation == "intensities":
      i_obs, sigma = i_b, 0.02 * i_b + 1e-6
    else:
      f_sq[b, sel], present[b, sel] = i_b, True
      continue
    f, accepted = french_wilson(i_obs, sigma, r.d_star_sq[b, sel], r.unit_cells[b])
    f_sq[b, sel[accepted]] = f[accepted] ** 2
    present[b, sel[accepted]] = True
  dev = r.device
  return Observations(f_sq=torch.as_tensor(f_sq, device=dev), present=torch.as_tensor(present, device=dev))


def french_wilson(i_obs, sigma, d_star_sq, unit_cell, max_bins=60, min_bin_size=40):
  """French & Wilson (1978) amplitudes of acentric intensities (all of P1's),
  computed as cctbx.french_wilson does, vectorised: the Wilson prior's mean
  intensity per resolution bin (cctbx's bins of equal reciprocal volume, as
  many as max_bins with min_bin_size reflections each), interpolated linearly
  in d between bin centres; the posterior mean of F from French & Wilson's
  table below h = I/sigma - sigma/<I> = 3, sqrt(h sigma) above; reflections
  with I/sigma < -3.7 or h < -4 rejected.  Returns (F, accepted)."""
  from cctbx import miller
  from cctbx.french_wilson import ac_zf
  n = len(i_obs)
  d_max, d_min = 1 / math.sqrt(d_star_sq.min()), 1 / math.sqrt(d_star_sq.max())
  n_bins = max_bins
  while n_bins > 1:
    limits = np.array(miller.binning(unit_cell, n_bins, d_max, d_min).limits())
    bin_of = np.clip(np.searchsorted(limits, d_star_sq, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(bin_of, minlength=n_bins)
    if counts[counts > 0].min() >= min_bin_size:
      break
    n_bins -= 1
  if n_bins <= 1:
    bin_of, counts = np.zeros(n, dtype=np.int64), np.array([n])
  used = counts > 0
  mean_i = np.bincount(bin_of, weights=i_obs, minlength=len(counts))[used] / counts[used]
  d = 1.0 / np.sqrt(d_star_sq)
  d_max = np.full(len(counts), -np.inf)
  d_min = np.full(len(counts), np.inf)
  np.maximum.at(d_max, bin_of, d)
  np.minimum.at(d_min, bin_of, d)
  centres = 0.5 * (d_max + d_min)[used]
  order = np.argsort(centres)
  prior = np.interp(d, centres[order], mean_i[order])   # flat beyond the end centres, as cctbx
  with np.errstate(divide="ignore", invalid="ignore"):
    i_over_sigma = i_obs / sigma
    h = i_over_sigma - sigma / prior
    accepted = (i_over_sigma >= -3.7) & (h >= -4.0) & np.isfinite(h)
    table = np.asarray(ac_zf)
    point = 10.0 * (np.clip(h, -4.0, 2.999999) + 4.0)
    pt = np.floor(point).astype(np.int64)
    delta = point - pt
    f_table = ((1 - delta) * table[pt] + delta * table[np.minimum(pt + 1, len(table) - 1)]) * np.sqrt(sigma)
    f = np.where(h < 3.0, f_table, np.sqrt(np.maximum(h, 0) * sigma))
  return np.where(accepted, f, 0.0), accepted


# --------------------------------------------------------------------------
# Patterson window

_GRIDDING = {}


def cctbx_gridding(unit_cell, d_min, resolution_factor):
  """The FFT grid cctbx's Patterson map takes for data to d_min (miller.array.patterson_map)."""
  key = (tuple(round(p, 9) for p in unit_cell.parameters()), round(float(d_min), 9), resolution_factor)
  if key not in _GRIDDING:
    from cctbx import maptbx, sgtbx
    _GRIDDING[key] = maptbx.crystal_gridding(
      unit_cell=unit_cell, d_min=float(d_min), resolution_factor=resolution_factor,
      symmetry_flags=maptbx.use_space_group_symmetry, space_group_info=sgtbx.space_group_info("P -1"),
      max_prime=5).n_real()
  return _GRIDDING[key]


def _linear_factor(h, u, n):
  """Linear interpolation, between grid nodes i0 and i0 + 1 of an n-point
  periodic grid, of exp(2 pi i h x/n) at x = u: a complex tensor
  broadcasting h against u.  Phases from integers mod n, so they are exact."""
  i0 = torch.floor(u)
  w = (u - i0).to(torch.float32)
  i0 = i0.to(torch.int64)
  p0 = torch.remainder(h * i0, n).to(torch.float32) * (2 * math.pi / n)
  p1 = torch.remainder(h * (i0 + 1), n).to(torch.float32) * (2 * math.pi / n)
  return torch.complex((1 - w) * torch.cos(p0) + w * torch.cos(p1), (1 - w) * torch.sin(p0) + w * torch.sin(p1))


def patterson_windows(reflections, observations, grid, resolution_factor=0.25, input_d_min=0.0):
  """The network inputs (B, n, n, n), float32: for each case the Patterson of
  the observed amplitudes as patterson.model_input makes it -- the cctbx FFT
  grid for the data's resolution, trilinear interpolation onto the Cartesian
  window `grid` (a patterson.GridSpec), zero mean and unit RMS -- after
  leaving out reflections finer than input_d_min as patterson.cut_for_input."""
  r, dev = reflections, reflections.device
  present = observations.present.clone()
  dss = torch.as_tensor(r.d_star_sq, device=dev)
  if not bool(present.any(dim=1).all()):
    raise Sorry("A case of the batch has no reflections left: nothing to solve.")
  d_data = 1.0 / torch.sqrt(torch.where(present, dss, torch.zeros_like(dss)).max(dim=1).values)
  if input_d_min:   # the cut made before the Patterson (patterson.cut_for_input)
    cut = (d_data < input_d_min - 0.01)[:, None] & (dss > (1.0 / input_d_min) ** 2 * (1 + 1e-9))
    present &= ~cut
    d_data = 1.0 / torch.sqrt(torch.where(present, dss, torch.zeros_like(dss)).max(dim=1).values)
  n_real = [cctbx_gridding(r.unit_cells[b], float(d_data[b]), resolution_factor) for b in range(r.size)]
  # the half-space sum counts each Friedel pair once: weight 2, real part at the end
  values = torch.where(present, 2.0 * observations.f_sq, torch.zeros_like(observations.f_sq))
  n1, n2, n3 = r.box_shape
  box = torch.zeros(r.size, n1 * n2 * n3, dtype=torch.float32, device=dev)
  box[:, torch.as_tensor(r.index, device=dev)] = values.to(torch.float32)
  tables = [_axis_tables(r.frac[b], tuple(int(v) for v in n_real[b]), grid, tuple(int(v) for v in r.m), dev)
            for b in range(r.size)]
  n = grid.n
  # complex numbers as (real, imaginary) pairs of contiguous float tensors:
  # batched matmuls on strided complex views copy every slice
  if all(tb is tables[0] for tb in tables) and tables[0][2] is not None:
    p = _shared_orthogonal_sum(box.view(r.size * n1 * n2, n3), tables[0], r.size, n1, n2, n)
  else:
    # axis 3: fractional z depends on Cartesian z only
    box = box.view(r.size, n1 * n2, n3)
    l3 = [torch.stack([tb[0][part] for tb in tables]) for part in (0, 1)]            # (B, n3, K)
    a = [torch.matmul(box, l3[part]).view(r.size, n1, n2, n).permute(0, 3, 1, 2).contiguous()
         for part in (0, 1)]                                                          # (B, K, n1, n2)
    # axis 2: fractional y depends on Cartesian y and z
    l2 = [torch.stack([tb[1][part] for tb in tables]) for part in (0, 1)]            # (B, K, n2, J)
    t = _complex_matmul(a, l2)                                                        # (B, K, n1, J)
    # axis 1: fractional x depends on x, y and z (on x alone in orthogonal cells)
    if all(tb[2] is not None for tb in tables):
      l1 = [torch.stack([tb[2][part] for tb in tables]) for part in (0, 1)]          # (B, I, n1)
      t = [part.permute(0, 2, 3, 1).reshape(r.size, n1, n * n) for part in t]
      p = (torch.matmul(l1[0], t[0]) - torch.matmul(l1[1], t[1])).view(r.size, n, n, n)
    else:
      frac = torch.as_tensor(r.frac, device=dev)
      c = torch.as_tensor(grid.coordinates(), dtype=torch.float64, device=dev)
      n_real = torch.as_tensor(n_real, dtype=torch.int64, device=dev)
      p = _fft_axis1(torch.complex(*t), frac, c, n_real, r.m[0])
  p = p.to(torch.float32)
  p = p - p.mean(dim=(1, 2, 3), keepdim=True)
  rms = torch.sqrt((p * p).mean(dim=(1, 2, 3), keepdim=True))
  if not bool(torch.all(rms > 0)):
    raise Sorry("A Patterson window is flat (all amplitudes zero?): nothing to solve.")
  return p / rms


def _complex_matmul(a, b):
  """(re, im) pairs: a @ b with three real products (Gauss)."""
  k1 = torch.matmul(a[0] + a[1], b[0])
  k2 = torch.matmul(a[0], b[1] - b[0])
  k3 = torch.matmul(a[1], b[0] + b[1])
  return k1 - k3, k1 + k2


def _shared_orthogonal_sum(box, tables, bsz, n1, n2, n):
  """The three axis sums when every case of the batch has the same cell and
  grid in an orthogonal cell (the paper's case): each axis is one matrix
  product over the whole batch instead of many small ones.  box: (B n1 n2, n3)."""
  l3, l2, l1 = tables
  # axis 3: (K, n3) @ (n3, B n1 n2) -> (K, B n1, n2)
  a = [torch.matmul(l3[part].T, box.T).view(n, bsz * n1, n2) for part in (0, 1)]
  # axis 2: (K, B n1, n2) @ (K, n2, J) -> (K, B, n1, J)
  t = _complex_matmul(a, l2)
  t = [part.view(n, bsz, n1, n).permute(2, 0, 1, 3).reshape(n1, n * bsz * n) for part in t]
  # axis 1: (I, n1) @ (n1, K B J) -> (I, K, B, J) -> (B, I, J, K); the real part only
  p = torch.matmul(l1[0], t[0]) - torch.matmul(l1[1], t[1])
  return p.view(n, n, bsz, n).permute(2, 0, 3, 1)


_TABLES = {}


def _axis_tables(frac, n_real, grid, m, device):
  """Interpolated Fourier factors of one cell and FFT grid on the window:
  axis 3 (n3, K), axis 2 as (K, n2, J), and axis 1 as (I, n1) when the cell's
  x depends on Cartesian x alone (else None).  Cached: a batch of one cell
  (the paper's case) computes them once."""
  key = (frac.tobytes(), n_real, grid.n, grid.voxel, m, str(device))
  if key in _TABLES:
    return _TABLES[key]
  c = torch.as_tensor(grid.coordinates(), dtype=torch.float64, device=device)
  f = torch.as_tensor(frac, device=device)
  h1 = torch.arange(-m[0], m[0] + 1, device=device)
  h2 = torch.arange(-m[1], m[1] + 1, device=device)
  h3 = torch.arange(0, m[2] + 1, device=device)
  l3 = _linear_factor(h3[:, None], (f[2, 2] * c * n_real[2])[None, :], n_real[2])
  u2 = (f[1, 1] * c[:, None] + f[1, 2] * c[None, :]) * n_real[1]                  # (J, K)
  l2 = _linear_factor(h2[:, None, None], u2[None], n_real[1]).permute(2, 0, 1)     # (K, n2, J)
  l1 = None
  if abs(frac[0, 1]) < 1e-12 and abs(frac[0, 2]) < 1e-12:
    l1 = _linear_factor(h1[None, :], (f[0, 0] * c * n_real[0])[:, None], n_real[0])  # (I, n1)
  if len(_TABLES) > 256:
    _TABLES.clear()
  _TABLES[key] = tuple(None if l is None else (l.real.contiguous(), l.imag.contiguous())
                       for l in (l3, l2, l1))
  return _TABLES[key]


def _fft_axis1(t, frac, c, n_real, m1):
  """Axis 1 of a non-orthogonal cell: fractional x depends on all three
  Cartesian coordinates, so each window point has its own interpolation
  nodes.  For every (y, z) line the sum over h is taken at all n nodes of
  cctbx's grid by one inverse FFT (exactly the map cctbx samples there), and
  each point interpolates linearly between its two nodes, as
  patterson.interpolate_periodic does.  t: complex (B, K, n1, J)."""
  bsz, n = t.shape[0], c.shape[0]
  result = torch.empty(bsz, n, n, n, dtype=torch.float32, device=t.device)
  for b in range(bsz):   # cases of a batch may have different grids
    nb = int(n_real[b, 0])
    lines = torch.zeros(n, n, nb, dtype=torch.complex64, device=t.device)          # (J, K, nodes)
    h = torch.remainder(torch.arange(-m1, m1 + 1, device=t.device), nb)
    lines.index_add_(2, h, t[b].permute(2, 0, 1))                                # (K, n1, J) -> (J, K, n1)
    nodes = torch.fft.ifft(lines, dim=2).real * nb                                # sum_h t_h exp(+2 pi i h q/n)
    u1 = (frac[b, 0, 0] * c[:, None, None] + frac[b, 0, 1] * c[None, :, None]
          + frac[b, 0, 2] * c[None, None, :]) * nb                                # (I, J, K)
    i0 = torch.floor(u1)
    w = (u1 - i0).to(torch.float32)
    i0 = torch.remainder(i0.to(torch.int64), nb)
    nodes = nodes.permute(2, 0, 1)                                                # (nodes, J, K)
    lower = torch.gather(nodes, 0, i0)
    upper = torch.gather(nodes, 0, torch.remainder(i0 + 1, nb))
    result[b] = (1 - w) * lower + w * upper
  return result


# --------------------------------------------------------------------------
# targets

def target_grids(sites_list, grid, sigma=0.6, inverses=True, device="cpu"):
  """synthetic.target_grid for a batch (B, n, n, n) float32: Gaussian atoms of
  height 1 and width sigma on `grid`; with inverses, (atoms + inverted) / 2."""
  dev = torch.device(device)
  n_atoms = max(len(s) for s in sites_list)
  sites = np.zeros((len(sites_list), n_atoms, 3))
  present = np.zeros((len(sites_list), n_atoms))
  for b, s in enumerate(sites_list):
    sites[b, :len(s)] = s
    present[b, :len(s)] = 1.0
  sites = torch.as_tensor(sites, device=dev)
  present = torch.as_tensor(present, device=dev)
  if inverses:
    sites = torch.cat([sites, -sites], dim=1)
    present = torch.cat([present, present], dim=1)
  c = torch.as_tensor(grid.coordinates(), device=dev)
  g = torch.exp(-(c[None, None, None, :] - sites[..., None]) ** 2 / (2 * sigma * sigma))   # (B, A, 3, n)
  out = torch.einsum("bai,baj,bak->bijk", g[:, :, 0] * present[..., None], g[:, :, 1], g[:, :, 2])
  if inverses:
    out = out * 0.5
  return out.to(torch.float32)


# --------------------------------------------------------------------------
# whole examples

@dataclass
class DrawnCase:
  """A case's molecule and conditions, drawn but not yet observed."""
  seed: int
  molecule: Molecule
  sites_centred: np.ndarray
  unit_cell: object
  d_min: float
  noise: float
  completeness: float
  rng: np.random.Generator    # continues with the observation's draws


def draw_case(seed, params):
  """The molecule and conditions of synthetic.make_case(seed, params): the
  same draws in the same order (tests/test_batch_data.py checks it), so a
  seed names the same molecule on both data paths; only the random
  reflections dropped and the noise differ.  With
  synthetic.molecule_source=molecules the molecule is cctbx_p2a.molecules'
  (hydrogens scatter; the targets are its non-H atoms), with store one of a
  cctbx_p2a.molecule_store, turned at random."""
  rng = np.random.default_rng(seed)
  lo, hi = (list(params.n_atoms) * 2)[:2]
  if getattr(params, "molecule_source", "points") in ("molecules", "store"):
    from cctbx_p2a import molecule_store
    real = molecule_store.case_molecule(params, int(rng.integers(2 ** 31)), (lo, hi))
    sites = real.non_h_sites
    unit_cell = synthetic.draw_unit_cell(rng, params)
    u_iso = synthetic.draw(rng, params.u_iso)
    molecule = Molecule.of(real.sites_cart, [str(e) for e in real.elements],
                           real.u_iso(u_iso, params.hydrogen_u_factor))
  else:
    n_atoms = int(rng.integers(lo, hi + 1))
    sites = random_points(rng, n_atoms, params.extent, params.min_distance)
    unit_cell = synthetic.draw_unit_cell(rng, params)
    elements = synthetic.draw_elements(rng, params, n_atoms)
    u_iso = synthetic.draw(rng, params.u_iso)
    molecule = Molecule.of(sites, elements, u_iso)
  rng.uniform(0, 1, 3)   # make_case places the centroid here; the Patterson cannot see it
  d_min = synthetic.draw(rng, params.d_min)
  noise = synthetic.draw(rng, params.noise)
  completeness = synthetic.draw(rng, params.completeness)
  return DrawnCase(seed=seed, molecule=molecule, sites_centred=sites, unit_cell=unit_cell,
                   d_min=d_min, noise=noise, completeness=completeness, rng=rng)


def random_points(rng, n_atoms, extent, min_distance, max_tries=200):
  """synthetic.random_molecule with the same draws and the same result, the
  candidates tested against each other in numpy: a try draws its 50 n
  candidate points at once, keeps them greedily in order, and the generator is
  then rewound to just after the last point the one-by-one recipe would draw."""
  tries = 50 * n_atoms
  for _ in range(max_tries):
    state = rng.bit_generator.state
    points = rng.uniform(-extent, extent, (tries, 3))
    free = np.ones(tries, dtype=bool)
    kept = []
    i = 0
    while len(kept) < n_atoms:
      ahead = np.flatnonzero(free[i:])
      if ahead.size == 0:
        break
      i += int(ahead[0])
      kept.append(i)
      free &= ((points - points[i]) ** 2).sum(axis=1) >= min_distance ** 2
      i += 1
    if len(kept) == n_atoms:
      rng.bit_generator.state = state
      rng.uniform(-extent, extent, (kept[-1] + 1, 3))   # what the one-by-one recipe drew
      sites = points[kept]
      return sites - sites.mean(axis=0)
  raise Sorry("Cannot place %d atoms %.2f A apart within +-%.2f A: lower n_atoms or "
              "min_distance, or raise extent." % (n_atoms, min_distance, extent))


def check_supported(patterson_params):
  if patterson_params.sharpening or patterson_params.origin_peak_removal:
    raise Sorry("The fast data path does not model patterson.sharpening or "
                "patterson.origin_peak_removal: set train.data_path=cctbx for them.")


def model_inputs(molecules, unit_cells, d_min, grid, rngs, noise=0.0, completeness=1.0,
                 observation="amplitudes", input_d_min=2.0, resolution_factor=0.25, device="cpu"):
  """Network inputs (B, n, n, n) for molecules in P1 cells with data to d_min
  (one value per case), as patterson.model_input on the cctbx path makes
  them from simulated data.  As in training, data are simulated no finer
  than input_d_min, the finer reflections being cut before the Patterson
  anyway."""
  d_sim = np.maximum(np.asarray(d_min, dtype=float).reshape(-1), input_d_min or 0.0)
  noise = np.broadcast_to(np.asarray(noise, dtype=float), d_sim.shape)
  completeness = np.broadcast_to(np.asarray(completeness, dtype=float), d_sim.shape)
  # cases sharing a cell and resolution share their reflections and tables
  # (the paper's case: the whole batch); others are summed case by case
  # rather than over the union of very different reflection spheres
  groups = {}
  for b, (cell, d) in enumerate(zip(unit_cells, d_sim)):
    groups.setdefault((cell.parameters(), round(float(d), 9)), []).append(b)
  out = torch.empty(len(d_sim), grid.n, grid.n, grid.n, dtype=torch.float32, device=device)
  for members in groups.values():
    reflections = UniqueReflections([unit_cells[b] for b in members], d_sim[members], device=device)
    i_true = intensities(reflections, [molecules[b] for b in members])
    obs = observe(reflections, i_true, [rngs[b] for b in members], noise[members], completeness[members],
                  observation)
    out[torch.as_tensor(members, device=out.device)] = patterson_windows(
      reflections, obs, grid, resolution_factor, input_d_min)
  return out


def training_batch(seeds, params, input_grid, output_grid, device="cpu"):
  """(inputs (B, 1, n_in^3), targets (B, 1, n_out^3)) for example seeds, from
  the synthetic, patterson and target PHIL scopes: the fast counterpart of
  synthetic.training_pair."""
  check_supported(params.patterson)
  cases = [draw_case(seed, params.synthetic) for seed in seeds]
  x = model_inputs([c.molecule for c in cases], [c.unit_cell for c in cases],
                   [c.d_min for c in cases], input_grid, [c.rng for c in cases],
                   noise=[c.noise for c in cases], completeness=[c.completeness for c in cases],
                   observation=params.synthetic.observation, input_d_min=params.patterson.input_d_min,
                   resolution_factor=params.patterson.resolution_factor, device=device)
  sites = [c.sites_centred if params.target.centre else c.sites_centred + synthetic.ablation_offset(c.seed)
           for c in cases]
  y = target_grids(sites, output_grid, sigma=params.target.sigma, inverses=params.target.inverses,
                   device=device)
  return x[:, None], y[:, None]

"""Dual-space recycling from random atoms (after SHELXD): the crystal start
that goes on where charge flipping stops.

Why: charge flipping needs atomic resolution; on the measured development
sets cut to 1.2 A it solved 2 of 5.  Dual-space recycling imposes atoms
rather than positivity: atoms constrain the map more strongly when data are
few, and many cheap random trials make up for a low success rate per trial
(about 1-3 % on the sets cut to 1.2 A, measured in docs/crystals.md).

One trial, in the data's space group:
  random sites (or the Patterson's: PattersonSeeds, seeding=patterson)
  -> repeat `cycles_per_trial` times:
    phases of the strong E's (E >= e_min) from the sites, each weighted
    as one atom wherever it lies and by its peak height (atom_weights)
    -> E-map -> its highest n_sites peaks (symmetry copies merged)
    -> a random `omit_fraction` of them left out of the next phasing
  -> the last peaks, refined briefly against |F_obs| (sites, then an
     overall U and sites with U_iso: refine_u_iso).

Trials are ranked by CC(|F_obs|, |F_calc|) after that refinement.  No cheap
score separates right trials well (measured on ylid and sucrose cut to
1.2 A, 200-300 trials each, about 1 % with half the atoms right): SHELXD's
CC of E^2 ranked them 10th-177th, R1 0th-227th, this CC 0th-137th, the
bonded fraction of the raw peaks worse still.  Refining U_iso before the CC
is taken helps most at 1.5 A, where a wrong trial's sites fit |F| as well
as a half-right one's until the U_iso of its wrong atoms can rise (of
2,400 trials on four measured sets, the rounds' best 5 held 16 with 40 %
of the atoms right instead of 6: docs/crystals.md).  So a good share of
each round is finished, not only its best, side by side on the trials'
processes.  Nothing here decides "solved": p2a.solve hands the ranked
trials to the common finishing and its verdict, which do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Trial:
  """One dual-space trial: its sites (element `scattering_type`, refined
  briefly), R1 and CC(|F_obs|, |F_calc|) after that refinement, and its
  number (0-based)."""
  xray_structure: object
  r1: float
  cc: float
  index: int


def normalised(f_obs, reflections_per_bin=60):
  """|E| = |F| / sqrt(epsilon <|F|^2/epsilon>), the mean taken in shells of
  d*^2 holding about reflections_per_bin reflections each and interpolated
  between shell centres.  Written here because cctbx's
  quasi_normalize_structure_factors() fails (an assertion) on small data
  sets where an automatic bin comes out empty, e.g. thpp cut to 2.0 A."""
  from cctbx.array_family import flex
  f = abs(f_obs.customized_copy(sigmas=None))
  f_sq_over_eps = f_sq_over_epsilon(f)
  mean_at = shell_mean_f_sq_over_epsilon(f, reflections_per_bin, f_sq_over_eps)
  return f.customized_copy(data=flex.double(np.sqrt(f_sq_over_eps / mean_at)))


def f_sq_over_epsilon(f):
  """|F|^2 / epsilon of each reflection (numpy)."""
  return f.data().as_numpy_array() ** 2 / f.epsilons().data().as_numpy_array().astype(float)


def shell_mean_f_sq_over_epsilon(f, reflections_per_bin=60, f_sq_over_eps=None):
  """<|F|^2/epsilon> in shells of d*^2 of about reflections_per_bin
  reflections, interpolated linearly between shell centres and held
  constant beyond the first and last (never extrapolated, so never <= 0)."""
  if f_sq_over_eps is None:
    f_sq_over_eps = f_sq_over_epsilon(f)
  s = f.d_star_sq().data().as_numpy_array()
  order = np.argsort(s)
  n_bins = max(1, len(s) // reflections_per_bin)
  centres, means = [], []
  for chunk in np.array_split(order, n_bins):
    centres.append(s[chunk].mean())
    means.append(max(f_sq_over_eps[chunk].mean(), 1e-12))
  return np.interp(s, centres, means)


def strong_normalised(f_obs, e_min, min_strong=20):
  """(all normalised E's, those with E >= e_min): the strong ones carry the
  phases, as in every direct method.  At least min_strong of them (the
  largest), so that a tiny data set still gives a map."""
  from cctbx.array_family import flex
  e = normalised(f_obs)
  data = e.data().as_numpy_array()
  if (data >= e_min).sum() >= min(min_strong, len(data)):
    return e, e.select(e.data() >= e_min)
  largest = np.argsort(-data)[:min_strong]
  return e, e.select(flex.size_t(sorted(largest.tolist())))


def symmetry_operations(space_group):
  """(rotations (k, 3, 3), translations (k, 3)) of every operation,
  lattice centring included, acting on fractional columns: x' = R x + t."""
  ops = space_group.all_ops()
  return (np.array([np.array(op.r().as_double()).reshape(3, 3) for op in ops]),
          np.array([np.array(op.t().as_double()) for op in ops]))


class EMap(object):
  """The E-map of the strong reflections phased by a set of equal point
  atoms, with everything that stays the same from cycle to cycle computed
  once: h.R and exp(2 pi i h.t) of every symmetry operation, the map's
  gridding and its symmetry tags.

  Why: equal atoms of one element share one positive form factor, so the
  phases are those of sum_j sum_ops exp(2 pi i h.(R x_j + t)): numpy computes
  them in one product.  cctbx's direct summation and fft_map().peak_search()
  are exact but rebuild the symmetry tags and time themselves on every call,
  which took half of a trial's time (profiled: 10 sucrose trials at 1.2 A,
  2.6 s, of which 0.6 s in timers and 0.5 s in tags)."""

  def __init__(self, strong, resolution_factor, min_distance, special_tolerance=0.5):
    from cctbx import maptbx
    h = np.array(strong.indices(), dtype=float).reshape(-1, 3)
    self.rotations, self.translations = symmetry_operations(strong.space_group())
    self.h_r = np.einsum("nj,kji->kni", h, self.rotations)
    self.shift = np.exp(2j * np.pi * (h @ self.translations.T)).T
    self.orthogonalization = np.array(strong.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    self.special_tolerance = special_tolerance
    self.strong = strong
    self.amplitudes = strong.data().as_numpy_array()
    self.gridding = strong.crystal_gridding(resolution_factor=resolution_factor,
                                            symmetry_flags=maptbx.use_space_group_symmetry).tags()
    self.min_distance = min_distance

  def symmetry_copies(self, sites_frac):
    """(n_ops, n, 3) images of sites (n, 3) under every operation."""
    return np.einsum("kij,nj->kni", self.rotations, sites_frac) + self.translations[:, None, :]

  def site_weights(self, sites_frac):
    """1 / (how many operations map each site onto itself, within
    special_tolerance A): an atom on a special position is one atom, not one
    per operation that fixes it.  Why: counted once per operation, a peak on
    a rotation axis scatters n-fold, deepens its own density cycle after
    cycle and traps the trial (measured: exact 8-atom crystals in P4, P2_13,
    I4_1/a and I-43d, 0 of 10 trials solved, P4_1 6 of 10)."""
    x = np.asarray(sites_frac, dtype=float)
    d = self.symmetry_copies(x) - x[None]
    d -= np.round(d)
    lengths = np.linalg.norm(d @ self.orthogonalization.T, axis=2)
    return 1.0 / (lengths < self.special_tolerance).sum(axis=0)

  def phases(self, sites_frac, weights=None):
    """Phases (radians) of the strong reflections from point atoms at
    sites_frac, of scattering `weights` (default: equal), each counted once
    per operation."""
    x = np.asarray(sites_frac, dtype=float)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    f = ((np.exp(2j * np.pi * (self.h_r @ x.T)) * w).sum(axis=2) * self.shift).sum(axis=0)
    return np.angle(f)

  def peaks(self, sites_frac, n_peaks, weights=None):
    """(fractional sites (n, 3), heights (n,)) of the n_peaks highest peaks
    of the E-map phased by atoms at sites_frac of scattering `weights`
    (symmetry copies merged)."""
    from cctbx import maptbx, miller
    from cctbx.array_family import flex
    coefficients = self.strong.customized_copy(
      data=flex.complex_double(self.amplitudes * np.exp(1j * self.phases(sites_frac, weights))))
    fft_map = miller.fft_map(crystal_gridding=self.gridding, fourier_coefficients=coefficients)
    peaks = self.gridding.peak_search(
      maptbx.peak_search_parameters(peak_search_level=1, interpolate=True,
                                    min_distance_sym_equiv=self.min_distance, max_clusters=n_peaks),
      fft_map.real_map(direct_access=False), verify_symmetry=False).all(max_clusters=n_peaks)
    return np.array(peaks.sites()).reshape(-1, 3), np.array(peaks.heights())

  def atom_weights(self, sites_frac, heights, how):
    """The scattering given to each peak when it phases the next cycle.
    equal: 1, so a peak on an n-fold axis counts n times (once per operation
    that fixes it); multiplicity: 1 / that count, one atom; peak_height:
    that times its height over the median height (0.5-4), so a heavy atom
    weighs more."""
    if how == "equal":
      return None
    w = self.site_weights(sites_frac)
    if how == "peak_height" and len(heights):
      w = w * np.clip(heights / max(np.median(heights), 1e-12), 0.5, 4.0)
    return w


class PattersonSeeds(object):
  """Starting sites from the Patterson function (after SHELXD's Patterson
  seeding) instead of random ones.

  Why: a random start must find the whole structure by recycling alone; at
  1.5 A few do (the ylid: trial 601 of 650).  Two atoms one strong Patterson
  vector u apart, placed where they and their symmetry copies make vectors
  that all land on Patterson density, and the superposition minimum function
  of those seeds, M(x) = min over seeds s of P(x - s), already hold part of
  the structure: its highest peaks start the recycling.

  The Patterson is of E^2 - 1 (sharp, origin removed), on a P1 grid; values
  are read at the nearest grid point.  Vectors: the highest peaks between
  min_vector and max_vector A long (shorter ones merge with the origin
  below about 1.5 A resolution)."""

  def __init__(self, e_all, e_map, params):
    from cctbx import maptbx
    from cctbx.array_family import flex
    e_p1 = e_all.expand_to_p1()
    e_sq = e_p1.data() * e_p1.data() - 1.0
    coefficients = e_p1.customized_copy(data=flex.complex_double(e_sq, flex.double(e_sq.size(), 0)),
                                        sigmas=None)
    p1_gridding = e_p1.crystal_gridding(resolution_factor=params.resolution_factor,
                                        symmetry_flags=maptbx.use_space_group_symmetry)
    fft_map = coefficients.fft_map(crystal_gridding=p1_gridding)
    fft_map.apply_sigma_scaling()
    self.patterson = fft_map.real_map_unpadded().as_numpy_array()
    self.n = np.array(self.patterson.shape)
    peaks = fft_map.peak_search(maptbx.peak_search_parameters(
      peak_search_level=1, interpolate=True, min_distance_sym_equiv=0.5,
      max_clusters=20 * params.patterson_vectors)).all(max_clusters=20 * params.patterson_vectors)
    unit_cell = e_all.unit_cell()
    rotations = e_map.rotations
    vectors = []
    for site in peaks.sites():
      u = np.array(site) - np.round(site)
      length = unit_cell.length(tuple(u))
      # a pair one -u or R u apart (R a rotation of the group) is the same pair
      # moved by symmetry: keep one vector of each such set
      images = np.concatenate([rotations @ u, -(rotations @ u)])
      if params.min_vector <= length <= params.max_vector and not any(
          np.abs(np.mod(images - v + 0.5, 1) - 0.5).max(axis=1).min() < 1e-3 for v in vectors):
        vectors.append(u)
      if len(vectors) == params.patterson_vectors:
        break
    self.vectors = np.array(vectors).reshape(-1, 3)
    self.e_map = e_map
    self.positions = params.patterson_positions
    # fractional coordinates of the E-map's grid points, where M(x) is evaluated
    self.grid = np.stack(np.meshgrid(*[np.arange(k) / float(k) for k in e_map.gridding.n_real()],
                                     indexing="ij"), axis=-1)

  def values(self, frac):
    """P at fractional points (..., 3), nearest grid point."""
    index = np.mod(np.rint(np.asarray(frac) * self.n).astype(int), self.n)
    return self.patterson[index[..., 0], index[..., 1], index[..., 2]]

  def seed_pair(self, rng):
    """Two atoms one Patterson vector apart, placed (out of `positions` random
    tries) where the lowest Patterson value at the vectors between them and
    all their symmetry copies is highest.  In P1 every place is as good."""
    if not len(self.vectors):
      return rng.uniform(0, 1, (2, 3))
    u = self.vectors[rng.integers(len(self.vectors))]
    x1 = rng.uniform(0, 1, (self.positions, 3))
    pairs = np.stack([x1, x1 + u], axis=1)                            # (m, 2, 3)
    # (m, k-1, 2, 3): every copy but the identity's
    copies = self.e_map.symmetry_copies(pairs.reshape(-1, 3)).reshape(
      -1, self.positions, 2, 3).transpose(1, 0, 2, 3)[:, 1:]
    if copies.shape[1] == 0:
      return pairs[0]
    vectors = pairs[:, None, :, None, :] - copies[:, :, None, :, :]   # (m, k-1, 2, 2, 3)
    score = self.values(vectors).reshape(self.positions, -1).min(axis=1)
    return pairs[int(np.argmax(score))]

  def sites(self, rng, n_sites):
    """The n_sites highest peaks of the superposition minimum function of a
    seed pair and its symmetry copies (fewer when the map has fewer)."""
    from cctbx import maptbx
    seeds = self.e_map.symmetry_copies(self.seed_pair(rng)).reshape(-1, 3)
    minimum = np.full(self.grid.shape[:3], np.inf)
    for s in seeds:
      np.minimum(minimum, self.values(self.grid - s), out=minimum)
    peaks = self.e_map.gridding.peak_search(
      maptbx.peak_search_parameters(peak_search_level=1, interpolate=True,
                                    min_distance_sym_equiv=1.0, max_clusters=n_sites),
      _as_map(minimum), verify_symmetry=False
    ).all(max_clusters=n_sites)
    return np.array(peaks.sites()).reshape(-1, 3)


def _as_map(array):
  """A numpy 3D array as a flex.double grid of the same shape."""
  from cctbx.array_family import flex
  m = flex.double(np.ascontiguousarray(array).ravel())
  m.reshape(flex.grid(array.shape))
  return m


def one_trial(f_obs, e_map, n_sites, rng, params, scattering_type="C", deadline=None, seeds=None):
  """Random sites (or, with `seeds`, the Patterson's: PattersonSeeds)
  recycled through E-maps (module docstring).  Returns the final n_sites
  peaks as an xray.structure, not yet refined; None when the wall clock
  passes `deadline` first (a trial of hundreds of atoms -- a large cell
  without a composition -- can take minutes)."""
  from cctbx_p2a import finishing
  sites = seeds.sites(rng, n_sites) if seeds is not None else np.zeros((0, 3))
  if len(sites) == 0:
    sites = rng.uniform(0, 1, (n_sites, 3))
  weights = e_map.atom_weights(sites, np.ones(len(sites)), params.atom_weights)
  for cycle in range(params.cycles_per_trial):
    if deadline is not None and time.time() > deadline:
      return None
    peaks, heights = e_map.peaks(sites, n_sites, weights)
    if len(peaks) == 0:
      peaks, heights = rng.uniform(0, 1, (n_sites, 3)), np.ones(n_sites)
    last = cycle == params.cycles_per_trial - 1
    kept = np.ones(len(peaks), bool) if last else rng.random(len(peaks)) >= params.omit_fraction
    if not kept.any():
      kept[:] = True
    sites = peaks[kept]
    weights = e_map.atom_weights(sites, heights[kept], params.atom_weights)
  return finishing.structure_of_sites(f_obs.crystal_symmetry(), sites, scattering_type)


def run_trial(f_obs, e_map, n_sites, params, scattering_type, seed, index, deadline=None, seeds=None):
  """Trial number `index`: its random numbers come from (seed, index) alone,
  so a trial is the same whichever process runs it.  None past `deadline`."""
  from cctbx_p2a import finishing
  rng = np.random.default_rng([int(seed), 53, int(index)])
  xs = one_trial(f_obs, e_map, n_sites, rng, params, scattering_type, deadline, seeds)
  if xs is None:
    return None
  finishing.refine(xs, f_obs, cycles=2 if params.refine_u_iso else 1,
                   max_iterations=params.refine_iterations, refine_u_iso=params.refine_u_iso)
  r1, cc = finishing.r1_and_cc(f_obs, xs)[:2]
  return Trial(xray_structure=xs, r1=r1, cc=cc, index=index)


def n_processes(nproc):
  """nproc, or (0) every core this process may use; 1 inside a daemonic
  worker (p2a.compare's pool), which may not start processes of its own."""
  import multiprocessing
  import os
  if multiprocessing.current_process().daemon:
    return 1
  if nproc and nproc > 0:
    return int(nproc)
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_WORKER = {}


def _worker_init(finish, *args):
  _WORKER["finish"] = finish
  _WORKER["args"] = args


def _worker_trial(index):
  *args, deadline, seeds = _WORKER["args"]
  return run_trial(*args, index=index, deadline=deadline, seeds=seeds)


def _worker_finish(xray_structure):
  return _WORKER["finish"](xray_structure)


def trial_setup(f_obs, params, min_distance=1.0):
  """What every trial shares: the E-map of the strong reflections and, with
  params.seeding=patterson, the Patterson seeds (else None)."""
  e_all, strong = strong_normalised(f_obs, params.e_min)
  e_map = EMap(strong, params.resolution_factor, min_distance)
  seeds = PattersonSeeds(e_all, e_map, params) if params.seeding == "patterson" else None
  return e_map, seeds


def best_of_rounds(f_obs, n_sites, params, scattering_type="C", seed=0, min_distance=1.0,
                   clock=time.time, finish=None):
  """The trials in rounds of params.trials_per_round (on params.processes
  processes); after each round its params.finish_per_round best (highest
  CC) are yielded as (Trial, trials run so far, finish(its structure) or
  None), until params.n_trials trials or params.max_seconds have been
  spent, the caller's time in between included (the best trial of the last
  round is still yielded).  The caller judges each candidate and stops
  early when one is solved.

  finish: a function of an xray.structure (the common finishing).  With
  more than one process the round's candidates are finished side by side
  in the trials' pool, which would otherwise wait while the main process
  finishes them one by one: a finishing costs 10-30 trials (thpp at 1.5 A:
  about 0.1 s a trial, 1-3 s a finishing).
  The results do not depend on the number of processes."""
  import multiprocessing
  t0 = clock()
  deadline = time.time() + params.max_seconds  # the wall clock, read inside trials too
  e_map, seeds = trial_setup(f_obs, params, min_distance)
  nproc = n_processes(params.processes)
  pool = None
  if nproc > 1:
    # fork: the workers inherit their arguments (finish may be a closure)
    pool = multiprocessing.get_context("fork").Pool(
      nproc, initializer=_worker_init,
      initargs=(finish, f_obs, e_map, n_sites, params, scattering_type, seed, deadline, seeds))
  try:
    done = 0
    while done < params.n_trials and clock() - t0 < params.max_seconds:
      indices = range(done, done + min(params.trials_per_round, params.n_trials - done))
      if pool is not None:  # a round at a time: the clock is read between rounds
        this_round = pool.map(_worker_trial, indices, chunksize=max(1, len(indices) // (4 * nproc)))
      else:
        this_round = []
        for index in indices:
          this_round.append(run_trial(f_obs, e_map, n_sites, params, scattering_type, seed, index,
                                      deadline, seeds))
          if clock() - t0 >= params.max_seconds:
            break
      this_round = [t for t in this_round if t is not None]  # trials cut off by the deadline
      if not this_round:
        break
      done += len(this_round)
      best = sorted(this_round, key=lambda t: -t.cc)[:params.finish_per_round]
      # the caller's finishing counts too (minutes for 500 atoms); but the
      # best trial of a round that ran is always handed over, or a round cut
      # short by the budget would have run for nothing
      if time.time() > deadline:
        best = best[:1]
      finished = [None] * len(best)
      if finish is not None and pool is not None:
        finished = pool.map(_worker_finish, [t.xray_structure for t in best], chunksize=1)
      for rank, (trial, result) in enumerate(zip(best, finished)):
        if rank > 0 and time.time() > deadline and result is None:
          return
        if finish is not None and result is None:
          result = finish(trial.xray_structure)
        yield trial, done, result
  finally:
    if pool is not None:
      pool.terminate()


def dual_space(f_obs, n_sites, scattering_type="C", seed=0, params=None):
  """The baseline form (baselines.METHODS): all n_trials trials (or
  max_seconds), the highest-CC trial returned as a PhasingResult (without
  the finishing that p2a.solve gives each round's best)."""
  from cctbx_p2a import baselines
  t0 = time.time()
  bp = baselines._params(params)
  p = bp.dual_space
  f = baselines._prepared_amplitudes(f_obs)
  best, n_run = None, 0
  for trial, n_run, _ in best_of_rounds(f, n_sites, p, scattering_type, seed,
                                     min_distance=bp.peak_search.min_distance):
    if best is None or trial.cc > best.cc:
      best = trial
  if best is None:
    from cctbx import xray
    return baselines.PhasingResult(
      "dual_space", xray.structure(crystal_symmetry=f.crystal_symmetry()), n_trials=0,
      time_s=time.time() - t0,
      notes=["no trial finished within max_seconds=%.0f" % p.max_seconds])
  xs = best.xray_structure
  cc = baselines.amplitude_correlation(xs, f)
  fc = f.structure_factors_from_scatterers(xs, algorithm="fft").f_calc()
  return baselines.PhasingResult(
    "dual_space", xs, phases=f.phase_transfer(fc), fom=cc, solved_by_own_criterion=cc >= bp.min_cc,
    n_trials=n_run, time_s=time.time() - t0,
    notes=["best of %d trials: trial %d, CC %.3f after its brief refinement" % (n_run, best.index + 1, best.cc)])

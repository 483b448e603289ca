"""Dual-space recycling from random atoms (after SHELXD): the crystal start
that goes on where charge flipping stops.

Why: charge flipping needs atomic resolution; on the measured development
sets cut to 1.2 A it solved 2 of 5.  Dual-space recycling imposes atoms
rather than positivity: atoms constrain the map more strongly when data are
few, and many cheap random trials make up for a low success rate per trial
(about 1-3 % on the sets cut to 1.2 A, measured in docs/crystals.md).

One trial, in the data's space group:
  random sites -> repeat `cycles_per_trial` times:
    phases of the strong E's (E >= e_min) from the sites
    -> E-map -> its highest n_sites peaks (symmetry copies merged)
    -> a random `omit_fraction` of them left out of the next phasing
  -> the last peaks, refined briefly (sites only) against |F_obs|.

Trials are ranked by CC(|F_obs|, |F_calc|) after that refinement.  No cheap
score separates right trials well (measured on ylid and sucrose cut to
1.2 A, 200-300 trials each, about 1 % with half the atoms right): SHELXD's
CC of E^2 ranked them 10th-177th, R1 0th-227th, this CC 0th-137th, the
bonded fraction of the raw peaks worse still.  So a good share of each
round is finished, not only its best.  Nothing here decides "solved":
p2a.solve hands the ranked trials to the common finishing and its verdict,
which do.
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
  f_sq = f.data().as_numpy_array() ** 2
  eps = f.epsilons().data().as_numpy_array().astype(float)
  mean_at = shell_mean_f_sq_over_epsilon(f, reflections_per_bin)
  return f.customized_copy(data=flex.double(np.sqrt(f_sq / (eps * mean_at))))


def shell_mean_f_sq_over_epsilon(f, reflections_per_bin=60):
  """<|F|^2/epsilon> in shells of d*^2 of about reflections_per_bin
  reflections, interpolated linearly between shell centres and held
  constant beyond the first and last (never extrapolated, so never <= 0)."""
  f_sq = f.data().as_numpy_array() ** 2
  eps = f.epsilons().data().as_numpy_array().astype(float)
  s = f.d_star_sq().data().as_numpy_array()
  order = np.argsort(s)
  n_bins = max(1, len(s) // reflections_per_bin)
  centres, means = [], []
  for chunk in np.array_split(order, n_bins):
    centres.append(s[chunk].mean())
    means.append(max((f_sq[chunk] / eps[chunk]).mean(), 1e-12))
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

  def __init__(self, strong, resolution_factor, min_distance):
    from cctbx import maptbx
    h = np.array(strong.indices(), dtype=float).reshape(-1, 3)
    ops = strong.space_group().all_ops()
    self.h_r = np.stack([h @ np.array(op.r().as_double()).reshape(3, 3) for op in ops])
    self.shift = np.stack([np.exp(2j * np.pi * (h @ np.array(op.t().as_double()))) for op in ops])
    self.strong = strong
    self.amplitudes = strong.data().as_numpy_array()
    self.gridding = strong.crystal_gridding(resolution_factor=resolution_factor,
                                            symmetry_flags=maptbx.use_space_group_symmetry).tags()
    self.min_distance = min_distance

  def phases(self, sites_frac):
    """Phases (radians) of the strong reflections from equal atoms at sites_frac."""
    f = (np.exp(2j * np.pi * (self.h_r @ np.asarray(sites_frac).T)).sum(axis=2) * self.shift).sum(axis=0)
    return np.angle(f)

  def peaks(self, sites_frac, n_peaks):
    """Fractional sites of the n_peaks highest peaks of the E-map phased by
    sites_frac (symmetry copies merged)."""
    from cctbx import maptbx, miller
    from cctbx.array_family import flex
    coefficients = self.strong.customized_copy(
      data=flex.complex_double(self.amplitudes * np.exp(1j * self.phases(sites_frac))))
    fft_map = miller.fft_map(crystal_gridding=self.gridding, fourier_coefficients=coefficients)
    peaks = self.gridding.peak_search(
      maptbx.peak_search_parameters(peak_search_level=1, interpolate=True,
                                    min_distance_sym_equiv=self.min_distance, max_clusters=n_peaks),
      fft_map.real_map(direct_access=False), verify_symmetry=False).all(max_clusters=n_peaks)
    return np.array(peaks.sites()).reshape(-1, 3)


def one_trial(f_obs, e_map, n_sites, rng, params, scattering_type="C", deadline=None):
  """Random sites recycled through E-maps (module docstring).  Returns the
  final n_sites peaks as an xray.structure, not yet refined; None when the
  wall clock passes `deadline` first (a trial of hundreds of atoms -- a large
  cell without a composition -- can take minutes)."""
  from cctbx_p2a import finishing
  sites = rng.uniform(0, 1, (n_sites, 3))
  for cycle in range(params.cycles_per_trial):
    if deadline is not None and time.time() > deadline:
      return None
    peaks = e_map.peaks(sites, n_sites)
    if len(peaks) == 0:
      peaks = rng.uniform(0, 1, (n_sites, 3))
    last = cycle == params.cycles_per_trial - 1
    sites = peaks if last else peaks[rng.random(len(peaks)) >= params.omit_fraction]
    if len(sites) == 0:
      sites = peaks
  return finishing.structure_of_sites(f_obs.crystal_symmetry(), sites, scattering_type)


def run_trial(f_obs, e_map, n_sites, params, scattering_type, seed, index, deadline=None):
  """Trial number `index`: its random numbers come from (seed, index) alone,
  so a trial is the same whichever process runs it.  None past `deadline`."""
  from cctbx_p2a import finishing
  rng = np.random.default_rng([int(seed), 53, int(index)])
  xs = one_trial(f_obs, e_map, n_sites, rng, params, scattering_type, deadline)
  if xs is None:
    return None
  finishing.refine(xs, f_obs, cycles=1, max_iterations=params.refine_iterations, refine_u_iso=False)
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


def _worker_init(*args):
  _WORKER["args"] = args


def _worker_trial(index):
  return run_trial(*_WORKER["args"][:-1], index=index, deadline=_WORKER["args"][-1])


def best_of_rounds(f_obs, n_sites, params, scattering_type="C", seed=0, min_distance=1.0,
                   clock=time.time):
  """The trials in rounds of params.trials_per_round (on params.processes
  processes); after each round its params.finish_per_round best (highest
  CC) are yielded as (Trial, trials run so far), until params.n_trials trials
  or params.max_seconds have been spent, the caller's time in between
  included.  The caller finishes each candidate and stops early when one is
  solved."""
  import multiprocessing
  t0 = clock()
  deadline = time.time() + params.max_seconds  # the wall clock, read inside trials too
  e_map = EMap(strong_normalised(f_obs, params.e_min)[1], params.resolution_factor, min_distance)
  nproc = n_processes(params.processes)
  pool = None
  if nproc > 1:
    pool = multiprocessing.get_context("fork").Pool(
      nproc, initializer=_worker_init,
      initargs=(f_obs, e_map, n_sites, params, scattering_type, seed, deadline))
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
                                      deadline))
          if clock() - t0 >= params.max_seconds:
            break
      this_round = [t for t in this_round if t is not None]  # trials cut off by the deadline
      if not this_round:
        break
      done += len(this_round)
      for trial in sorted(this_round, key=lambda t: -t.cc)[:params.finish_per_round]:
        if time.time() > deadline:  # the caller's finishing counts too (minutes for 500 atoms)
          return
        yield trial, done
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
  for trial, n_run in best_of_rounds(f, n_sites, p, scattering_type, seed,
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
    notes=["best of %d trials: trial %d, CC %.3f after site refinement" % (n_run, best.index + 1, best.cc)])

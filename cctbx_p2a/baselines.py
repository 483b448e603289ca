"""Conventional ab initio phasing: the baselines the network is compared with.

Each method gets what the network gets (merged amplitudes and the number of
atoms to place) and its best honest settings (phil/baselines.phil); neither
ever sees the answer:

  charge_flipping   smtbx.ab_initio.charge_flipping from several random
                    starts; of the accepted starts, the one whose peaks best
                    explain |F_obs| is kept
  tangent_formula   multi-solution direct methods (weighted tangent formula
                    from random starts, combined figure of merit), written
                    here on top of cctbx.dmtbx.triplet_generator since cctbx
                    ships only the building blocks
  dual_space        dual-space recycling from random atoms, after SHELXD
                    (cctbx_p2a.dual_space); the highest-CC trial is kept

All return a PhasingResult; score_against_reference() is the yardstick for
all methods, the network included (emma: origin shifts and hand allowed).
Every function takes the extracted `baselines` PHIL scope as params.
"""
from __future__ import absolute_import, division, print_function

import math
import random
import sys
import time

import numpy as np

from cctbx import dmtbx
from cctbx import euclidean_model_matching as emma
from cctbx.array_family import flex
import scitbx.math
from smtbx.ab_initio import charge_flipping as _cf


class PhasingResult(object):
  """What every baseline returns, so the comparison harness treats all alike.

  xray_structure: n_sites peaks in f_obs's crystal symmetry; phases: F_obs
  (same indices) times exp(i phi) of the solution, or None; fom: the method's
  own figure of merit; solved_by_own_criterion: what the method would report
  to a user who does not know the answer; n_trials: random starts used."""

  def __init__(self, method, xray_structure, phases=None, fom=0.0,
               solved_by_own_criterion=False, n_trials=0, time_s=0.0,
               notes=None):
    self.method = method
    self.xray_structure = xray_structure
    self.phases = phases
    self.fom = fom
    self.solved_by_own_criterion = solved_by_own_criterion
    self.n_trials = n_trials
    self.time_s = time_s
    self.notes = list(notes or [])

  def show(self, out=sys.stdout):
    print("%s: %s by its own criterion, fom %.3f, %d start(s), %.2f s, "
          "%d sites" % (
            self.method,
            "solved" if self.solved_by_own_criterion else "NOT solved",
            self.fom, self.n_trials, self.time_s,
            self.xray_structure.scatterers().size()), file=out)
    for note in self.notes:
      print("  " + note, file=out)


def _params(params):
  if params is None:
    from cctbx_p2a import phil
    params = phil.extract("baselines").baselines
  return params


def _seed_everything(seed):
  """smtbx draws from flex, random_structure from random: seed all three."""
  random.seed(seed)
  np.random.seed(seed % 2**32)
  flex.set_random_seed(seed)


def amplitude_quasi_normalisations(f):
  """smtbx's normalisations N(h) (E = F / N) where they work; where they do
  not, the same shell means without extrapolation.  smtbx bins 200
  reflections per shell and extrapolates linearly past the outer shell
  centres; on a small data set (a 6-atom molecule in Pna2_1 at 0.8 A, 498
  reflections: measured) that goes below zero at the resolution limit and
  cctbx stops on an assertion, which crashed the solve."""
  try:
    return _cf.amplitude_quasi_normalisations(f)
  except AssertionError:
    from cctbx_p2a import dual_space
    mean = dual_space.shell_mean_f_sq_over_epsilon(f, reflections_per_bin=200)
    return f.customized_copy(data=flex.double(np.sqrt(mean)), sigmas=None)


def _prepared_amplitudes(f_obs):
  """Merged, non-anomalous amplitudes in the asymmetric unit, without
  systematic absences: what both methods expect."""
  assert f_obs.is_real_array(), "f_obs must hold amplitudes"
  f = f_obs
  if f.is_xray_intensity_array():
    f = f.f_sq_as_f()
  f = f.as_non_anomalous_array()
  if not f.is_unique_set_under_symmetry():
    f = f.merge_equivalents().array()
  f = f.eliminate_sys_absent().map_to_asu()
  f = f.select(f.indices() != (0, 0, 0))
  f = f.customized_copy(data=flex.abs(f.data()), sigmas=None)
  f.set_observation_type_xray_amplitude()
  return f


def pick_sites(map_coeffs, n_sites, scattering_type="C", params=None,
               crystal_symmetry=None):
  """The n_sites highest peaks of the map of map_coeffs as an xray.structure;
  peaks closer than peak_search.min_distance (symmetry included) count as
  one."""
  from cctbx_p2a import finishing
  ps = _params(params).peak_search
  return finishing.peaks_as_structure(map_coeffs, n_sites, element=scattering_type, u_iso=ps.u_iso,
                                  min_distance=ps.min_distance,
                                  resolution_factor=ps.resolution_factor,
                                  crystal_symmetry=crystal_symmetry)


def amplitude_correlation(xs, f):
  """CC(|F_obs|, |F_calc(sites)|): how well picked atoms explain the data,
  without knowing the answer (SHELXD ranks trials the same way)."""
  fc = f.structure_factors_from_scatterers(xs, algorithm="fft").f_calc()
  return flex.linear_correlation(
    f.data(), flex.abs(fc.data())).coefficient()


def score_against_reference(reference_xs, found_xs, tolerance=0.5):
  """How many reference atoms a solution places within tolerance (A) after
  the best allowed origin shift and hand (emma); solved = all of them.
  elements_right: the fraction of matched atoms given the reference's
  element.  heavy_reference: the reference's atoms heavier than neon (P, S,
  Cl, Br, I, metals); heavy_right: how many of them are matched by an atom
  of their own element (the molecules issue asks where those land)."""
  n_ref = reference_xs.scatterers().size()
  ref_types = reference_xs.scatterers().extract_scattering_types()
  heavy = {i for i, t in enumerate(ref_types) if is_heavy(t)}
  result = dict(n_matched=0, n_reference=n_ref, mean_error_A=None,
                solved=False, rms=None, elements_right=None, heavy_reference=len(heavy), heavy_right=0)
  if n_ref == 0 or found_xs.scatterers().size() == 0:
    return result
  matches = emma.model_matches(
    reference_xs.as_emma_model(), found_xs.as_emma_model(),
    tolerance=tolerance,
    break_if_match_with_no_singles=False).refined_matches
  if not matches or not matches[0].pairs:
    return result
  m = matches[0]
  result["n_matched"] = len(m.pairs)
  result["mean_error_A"] = flex.mean(m.shortest_distances)
  result["rms"] = m.rms
  result["solved"] = len(m.pairs) == n_ref
  found_types = found_xs.scatterers().extract_scattering_types()
  result["elements_right"] = sum(ref_types[i] == found_types[j] for i, j in m.pairs) / len(m.pairs)
  result["heavy_right"] = sum(ref_types[i] == found_types[j] for i, j in m.pairs if i in heavy)
  return result


def is_heavy(scattering_type):
  """An element heavier than neon: what stands out of a C/N/O molecule."""
  from cctbx_p2a.finishing import atomic_number
  label = scattering_type.strip().rstrip("+-0123456789").capitalize()
  return label not in ("H", "D") and atomic_number(label) > 10


# ------------------------------------------------------------ charge flipping

class _solving_iterator(_cf.solving_iterator):
  """smtbx's solving_iterator with max_solving_iterations kept an int (it is
  multiplied by 1.5 from the third attempt on and islice refuses floats,
  Python 3) and capped (over many starts that growth is geometric)."""

  max_iterations_cap = None

  def __setattr__(self, name, value):
    if name == "max_solving_iterations":
      if self.max_iterations_cap is not None:
        value = min(value, self.max_iterations_cap)
      value = int(value)
    object.__setattr__(self, name, value)


def charge_flipping(f_obs, n_sites, scattering_type="C", seed=0, params=None):
  """Charge flipping from random phases. A start is accepted as smtbx does
  (phase transition in the map skewness, then a sharp symmetry-search
  correlation peak). After n_solutions accepted starts (or n_starts starts in
  all) the one whose n_sites highest peaks best explain |F_obs| is kept
  (smtbx accepts some wrong maps, and even maps of random amplitudes).
  fom: that correlation, CC(|F_obs|, |F(peaks)|); solved by its own
  criterion: accepted by smtbx and fom >= min_cc."""
  t0 = time.time()
  params = _params(params)
  p = params.charge_flipping
  _seed_everything(seed)
  f = _prepared_amplitudes(f_obs)
  n_starts = [0]

  def initial_phases(f_p1):
    n_starts[0] += 1
    return (2 * math.pi) * flex.random_double(f_p1.size())

  if p.iterator == "basic":
    flipping = _cf.basic_iterator()
  else:
    flipping = _cf.weak_reflection_improved_iterator(
      delta_varphi=p.delta_varphi * math.pi / 180,
      weak_reflection_fraction=p.weak_reflection_fraction)
  deltas = list(p.delta_over_sigma or [1.0])
  notes = ["%s iterator on %s, delta/sigma %s" % (
    p.iterator, "quasi-normalised E's" if p.normalise else "F's",
    " ".join("%.2f" % d for d in deltas))]
  solutions = []
  i_run = 0
  max_starts = max(1, p.n_starts)
  while len(solutions) < p.n_solutions and n_starts[0] < max_starts:
    # one run: starts until one is accepted; runs cycle through the deltas
    delta = deltas[i_run % len(deltas)]
    i_run += 1
    n_left = max_starts - n_starts[0]
    solving = _solving_iterator(
      flipping, f,
      initial_phases_for=initial_phases,
      normalisations_for=(amplitude_quasi_normalisations if p.normalise else None),
      delta_over_sigma=delta,
      max_iterations_cap=p.max_iterations_cap,
      max_solving_iterations=p.max_iterations,
      max_attempts_to_get_phase_transition=n_left,
      max_attempts_to_get_sharp_correlation_map=n_left,
      polishing_iterations=p.polishing_iterations,
      min_cc_peak_height=p.min_cc_peak_height)
    out_of_time = False
    try:
      for flipping_state in solving:
        if solving.state is solving.finished or n_starts[0] > max_starts:
          break
        out_of_time = time.time() - t0 > p.max_seconds
        if out_of_time:
          break
    except RuntimeError as e:
      # smtbx's symmetry search (an LBFGS shift refinement) can fail; the
      # run cannot go on, the next one starts afresh
      notes.append("start %d: symmetry search failed (%s)"
                   % (n_starts[0], str(e).splitlines()[0]))
      continue
    if out_of_time:
      notes.append("stopped after %.0f s (charge_flipping.max_seconds) in start %d"
                   % (time.time() - t0, n_starts[0]))
      break
    if solving.f_calc_solutions:
      # already in f_obs's space group and origin
      f_calc, shift, cc_peak = solving.f_calc_solutions[0]
      phases = f.phase_transfer(f_calc.common_set(f))
      xs = pick_sites(phases, n_sites, scattering_type, params)
      cc = amplitude_correlation(xs, f)
      solutions.append((cc, cc_peak, phases, xs))
      notes.append(
        "start %d (delta %.2f sigma): phase transition after %d cycles, "
        "correlation-map peak %.3f, CC(|F_obs|, |F(peaks)|) %.3f" % (
          n_starts[0], delta, solving.attempts[-1], cc_peak, cc))
  n_trials = min(n_starts[0], max_starts)
  if solutions:
    cc, cc_peak, phases, xs = max(solutions, key=lambda s: s[0])
    if len(solutions) > 1:
      notes.append("kept the solution with CC %.3f" % cc)
  else:
    # the last start's map is in P1: its peaks are only put in f's symmetry
    cc, phases = 0.0, None
    xs = pick_sites(flipping.f_calc, n_sites, scattering_type, params,
                    crystal_symmetry=f.crystal_symmetry())
    notes.append("no start out of %d was accepted" % n_trials)
  return PhasingResult(
    method="charge_flipping", xray_structure=xs, phases=phases, fom=cc,
    solved_by_own_criterion=bool(solutions) and cc >= params.min_cc,
    n_trials=n_trials, time_s=time.time() - t0, notes=notes)


# ------------------------------------------------------------ tangent formula

class triplet_arrays(object):
  """The triplet phase relations h = k + (h-k) of cctbx.dmtbx as flat numpy
  arrays sorted by h, so that all random starts are refined at once.

  Reflections 0..n_strong-1 of miller_set are phased; the others are weak
  ones, used only for psi-zero. Relations are kept only when both k and h-k
  are strong."""

  _per_relation = ("ih", "ik", "sk", "ihmk", "shmk", "ht", "ee")

  def __init__(self, miller_set, e_values, n_strong,
               max_relations_per_reflection=0):
    # weak E's as zero: the generator's truncation then keeps strong pairs
    amplitudes = e_values.deep_copy()
    amplitudes.set_selected(flex.size_t_range(n_strong, e_values.size()), 0)
    generator = dmtbx.triplet_generator(
      miller_set, amplitudes=amplitudes,
      max_relations_per_reflection=max_relations_per_reflection,
      sigma_2_only=False, discard_weights=False)
    t_den = generator.t_den()
    rows = []
    for h in range(e_values.size()):
      for r in generator.relations_for(h):
        if r.ik() < n_strong and r.ihmk() < n_strong:
          rows.append((h, r.ik(), -1 if r.friedel_flag_k() else 1,
                       r.ihmk(), -1 if r.friedel_flag_hmk() else 1,
                       r.ht_sum(), r.weight()))
    rows = np.array(rows, dtype=np.float64).reshape(-1, 7)
    self.n_strong = n_strong
    self.n_reflections = e_values.size()
    self.ih, self.ik, self.ihmk = [rows[:, i].astype(np.int64)
                                   for i in (0, 1, 3)]
    self.sk, self.shmk = rows[:, 2], rows[:, 4]
    # phase shift of symmetry-equivalent indices
    self.ht = 2 * math.pi * rows[:, 5] / t_den
    # E_k E_h-k times the multiplicity of the relation
    e = e_values.as_numpy_array()
    self.ee = rows[:, 6] * e[self.ik] * e[self.ihmk]
    self._setup()

  def select_h(self, first, last):
    """The relations of reflections first..last-1 only."""
    sel = (self.ih >= first) & (self.ih < last)
    result = object.__new__(triplet_arrays)
    result.__dict__.update(self.__dict__)
    for name in self._per_relation:
      setattr(result, name, getattr(self, name)[sel])
    result._setup()
    return result

  def _setup(self):
    # segment starts for np.add.reduceat (relations are sorted by h)
    assert (np.diff(self.ih) >= 0).all()
    self.h_present, self.seg_start = np.unique(self.ih, return_index=True)
    # exp(i phi) gathered from [u, conj(u)], Friedel mates taking the
    # conjugate: products instead of one exp() per relation and start
    n = self.n_reflections
    self.jk = self.ik + n * (self.sk < 0)
    self.jhmk = self.ihmk + n * (self.shmk < 0)
    self.c = self.ee * np.exp(1j * self.ht)

  def size(self):
    return self.ih.size

  def sums(self, phases, weights=None):
    """B_h = sum_k w_k w_h-k E_k E_h-k exp(i(phi_k + phi_h-k)) for each start
    (rows of phases, radians): complex, shape (n_starts, n_reflections).
    With weights, (weighted, unweighted) sums."""
    u = np.exp(1j * phases)
    result = self._sums(u)
    if weights is not None:
      return self._sums(u * weights), result
    return result

  def _sums(self, u):
    uu = np.concatenate([u, u.conj()], axis=1)
    terms = uu[:, self.jk] * uu[:, self.jhmk]
    terms *= self.c
    result = np.zeros(u.shape, dtype=complex)
    if terms.shape[1]:
      result[:, self.h_present] = np.add.reduceat(terms, self.seg_start,
                                                  axis=1)
    return result


def _i1_over_i0(x):
  return scitbx.math.bessel_i1_over_i0(
    flex.double(np.ascontiguousarray(x, dtype=np.float64))).as_numpy_array()


def normalised_amplitudes(f, reflections_per_bin=150):
  """E-values: Karle normalisation in resolution shells, epsilon included."""
  return f.normalize(
    reflections_per_bin=min(reflections_per_bin, max(20, f.size() // 4)))


class multi_start_tangent_formula(object):
  """Multi-solution direct methods, all random starts refined together.

  Strong E's are phased by the weighted tangent formula
    phi_h = arg sum_k w_k w_h-k E_k E_h-k exp(i(phi_k + phi_h-k))
  with w = tanh(alpha/2) (MULTAN), alpha_h = |sum_k kappa_hk exp(i ...)| and
  kappa_hk = 2 |E_h E_k E_h-k| / sqrt(N) for N equal atoms in the cell.
  Figures of merit, both small for right answers:
    R_alpha = sum (alpha_h - alpha_est_h)^2 / sum alpha_est_h^2 (SHELXS),
      alpha_est from the Cochran distribution (I1/I0 Bessel ratio);
    psi_0 = sum_weak |sum_k E_k E_h-k exp(..)|
            / sum_weak (sum_k (E_k E_h-k)^2)^1/2
      (sums that should cancel for the weakest E's); it is what rejects the
      over-consistent 'uranium atom' phase sets the tangent formula likes.
  CFOM = R_alpha + psi_0. Correct sets score about 1-1.7, false ones > 2.
  """

  def __init__(self, f, n_sites, params):
    p = params
    e = normalised_amplitudes(f, p.reflections_per_bin)
    order = flex.sort_permutation(e.data(), reverse=True)
    e_sorted = e.data().select(order)
    n_strong = (e_sorted >= p.e_min).count(True)
    n_strong = max(min(n_strong, p.max_strong), min(p.min_strong, e.size()))
    n_weak = min(p.n_weak, max(0, e.size() - n_strong))
    self.e_set = e.select(order[:n_strong].concatenate(
      order[e.size() - n_weak:]))
    self.n_strong, self.n_weak = n_strong, n_weak
    self.e_min_used = e_sorted[n_strong - 1]
    self.strong = self.e_set.select(flex.size_t_range(n_strong))
    self.triplets = triplet_arrays(self.e_set, self.e_set.data(), n_strong,
                                   p.max_relations_per_reflection)
    self.strong_triplets = self.triplets.select_h(0, n_strong)
    self.kappa_scale = 2.0 / math.sqrt(n_sites * f.space_group().order_z())
    tr = self.triplets
    e_np = self.e_set.data().as_numpy_array()
    self.e_strong = e_np[:n_strong]
    kappa = self.kappa_scale * e_np[tr.ih] * tr.ee
    t = _i1_over_i0(kappa)
    n_refl = tr.n_reflections
    var = np.bincount(tr.ih, weights=kappa**2 * (1 - t**2), minlength=n_refl)
    mean = np.bincount(tr.ih, weights=kappa * t, minlength=n_refl)
    self.alpha_est = np.sqrt(var + mean**2)[:n_strong]
    self.psi0_norm = np.sqrt(np.bincount(
      tr.ih, weights=tr.ee**2, minlength=n_refl))[n_strong:].sum()
    self.centric = self.strong.centric_flags().data().as_numpy_array()
    sg = self.strong.space_group()
    self.theta = np.array([sg.phase_restriction(h).ht_angle()
                           for h in self.strong.indices()])

  def restrict(self, phi):
    """Centric phases to the nearer of their two allowed values."""
    c = self.centric
    if c.any():
      phi[:, c] = self.theta[c] + math.pi * np.round(
        (phi[:, c] - self.theta[c]) / math.pi)
    return phi

  def random_phases(self, n_starts, rng):
    phases = np.zeros((n_starts, self.triplets.n_reflections))
    phases[:, :self.n_strong] = self.restrict(
      rng.uniform(0, 2 * math.pi, (n_starts, self.n_strong)))
    return phases

  def alpha(self, b):
    return self.kappa_scale * self.e_strong * np.abs(b[:, :self.n_strong])

  def refine(self, phases, n_cycles):
    """Weighted tangent refinement of all starts (rows of phases, changed in
    place). Returns phases, CFOM, R_alpha, psi_0 after the last cycle. Few
    cycles: the tangent formula slowly drifts from right answers to the
    uranium-atom solution; keeping each start's best-CFOM cycle instead is
    worse (half-refined sets score well on psi_0)."""
    n = self.n_strong
    weights = np.zeros_like(phases)
    weights[:, :n] = 1
    for cycle in range(n_cycles):
      bw, b = self.strong_triplets.sums(phases, weights)
      phases[:, :n] = self.restrict(np.angle(bw[:, :n]))
      weights[:, :n] = np.tanh(self.alpha(b) / 2)
    return (phases,) + self.figures_of_merit(phases)

  def figures_of_merit(self, phases):
    """(CFOM, R_alpha, psi_0) for each start."""
    b = self.triplets.sums(phases)
    r_alpha = ((self.alpha(b) - self.alpha_est)**2).sum(axis=1) \
      / (self.alpha_est**2).sum()
    if self.n_weak and self.psi0_norm > 0:
      psi0 = np.abs(b[:, self.n_strong:]).sum(axis=1) / self.psi0_norm
    else:
      psi0 = np.zeros(b.shape[0])
    return r_alpha + psi0, r_alpha, psi0

  def e_map_coefficients(self, phases_one_start):
    return self.strong.phase_transfer(
      flex.double(phases_one_start[:self.n_strong]))


def tangent_formula(f_obs, n_sites, scattering_type="C", seed=0, params=None):
  """Random-start weighted tangent formula ranked by the combined figure of
  merit (multi_start_tangent_formula). The E-maps of the n_best_checked best
  distinct starts are peak-picked; the peaks that best explain |F_obs| win.
  phases: F_obs with the phases of those peaks (the E-map phases only the
  strong reflections). fom: the CFOM; solved by its own criterion: CFOM
  below fom_threshold and CC(|F_obs|, |F(peaks)|) >= min_cc."""
  t0 = time.time()
  params = _params(params)
  p = params.tangent_formula
  _seed_everything(seed)
  f = _prepared_amplitudes(f_obs)
  dm = multi_start_tangent_formula(f, n_sites, p)
  rng = np.random.RandomState(seed % 2**32)
  phases, cfom, r_alpha, psi0 = dm.refine(
    dm.random_phases(p.n_starts, rng), p.n_cycles)
  best, seen = None, []
  for i_start in np.argsort(cfom, kind="stable"):
    if len(seen) >= max(1, p.n_best_checked):
      break
    if any(abs(cfom[i_start] - c) < 1e-4 for c in seen):
      continue  # the same phase set again (up to origin and hand)
    seen.append(cfom[i_start])
    xs = pick_sites(dm.e_map_coefficients(phases[i_start]), n_sites,
                    scattering_type, params,
                    crystal_symmetry=f.crystal_symmetry())
    cc = amplitude_correlation(xs, f)
    if best is None or cc > best[0]:
      best = (cc, i_start, xs)
  cc, i_start, xs = best
  solved = bool(cfom[i_start] < p.fom_threshold and cc >= params.min_cc)
  notes = [
    "%d strong E (|E| >= %.2f), %d weak E for psi0, %d triplets, "
    "%d cycles" % (dm.n_strong, dm.e_min_used, dm.n_weak,
                   dm.triplets.size(), p.n_cycles),
    "start %d: CFOM %.3f (R_alpha %.3f, psi0 %.3f), "
    "CC(|F_obs|, |F(peaks)|) %.3f" % (
      i_start, cfom[i_start], r_alpha[i_start], psi0[i_start], cc),
    "CFOM of the %d starts: min %.3f, median %.3f, %d below %.2f" % (
      p.n_starts, cfom.min(), np.median(cfom),
      (cfom < p.fom_threshold).sum(), p.fom_threshold)]
  fc = f.structure_factors_from_scatterers(xs, algorithm="fft").f_calc()
  return PhasingResult(
    method="tangent_formula", xray_structure=xs,
    phases=f.phase_transfer(fc), fom=float(cfom[i_start]),
    solved_by_own_criterion=solved, n_trials=p.n_starts,
    time_s=time.time() - t0, notes=notes)


def dual_space(f_obs, n_sites, scattering_type="C", seed=0, params=None):
  """Dual-space recycling from random atoms (cctbx_p2a.dual_space)."""
  from cctbx_p2a import dual_space as _ds
  return _ds.dual_space(f_obs, n_sites, scattering_type=scattering_type, seed=seed, params=params)


METHODS = {
  "charge_flipping": charge_flipping,
  "tangent_formula": tangent_formula,
  "dual_space": dual_space,
}

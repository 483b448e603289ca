"""The phasing step: F_obs (+ PHIL) -> a result holding an xray.structure.

    import cctbx_p2a
    result = cctbx_p2a.solve(f_obs)              # a miller.array, F or I
    result.show()
    result.xray_structure, result.phases, result.r1, result.cc

The stages, each a module of its own: reflections (checks, French-Wilson,
merging) -> domain check against the model card -> patterson (the network
input) -> network (atom map) -> sites (peaks, hand, refinement, completion).
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a import patterson, reflections, sites

# --- composition ----------------------------------------------------------------

_ELEMENT_COUNT = re.compile(r"([A-Z][a-z]?)(\d*)")


def parse_composition(text):
  """'C6N2O2' or 'C6 N2 O2' -> {'C': 6, 'N': 2, 'O': 2} (element order kept)."""
  from cctbx.eltbx import tiny_pse
  compact = (text or "").replace(" ", "")
  if not compact:
    raise Sorry("Empty composition: give atoms like composition=C6N2O2.")
  result, pos = {}, 0
  for m in _ELEMENT_COUNT.finditer(compact):
    if m.start() != pos:
      break
    element, count = m.group(1), m.group(2)
    try:
      tiny_pse.table(element)
    except RuntimeError:
      raise Sorry("Unknown element %r in composition=%s (write elements like C, N, O, Cl)." % (element, text))
    n = int(count) if count else 1
    if n == 0:
      raise Sorry("Zero count for %s in composition=%s." % (element, text))
    result[element] = result.get(element, 0) + n
    pos = m.end()
  if pos != len(compact):
    raise Sorry("Cannot read composition=%s at %r: write it like C6N2O2 (element symbols, "
                "each followed by a count)." % (text, compact[pos:]))
  return result


def elements_for_sites(composition, n_sites):
  """One element per site, heaviest first (sites are ranked by peak height)."""
  from cctbx.eltbx import tiny_pse
  if not composition:
    return ["C"] * n_sites
  ordered = sorted(composition.items(), key=lambda kv: -tiny_pse.table(kv[0]).atomic_number())
  elements = [e for e, n in ordered for _ in range(n)]
  return (elements + [ordered[-1][0]] * n_sites)[:n_sites]


ESTIMATED = "estimated from the atom map"


def atom_count(n_from_composition, model, pairs, centre, mass=None):
  """How many atoms to place: the composition when given; else the model's
  own atom count when it was trained on one count only; else the atom map's
  mass over the mass per atom measured for this model (its card), or failing
  that one atom per inverse pair of peaks -- an estimate, said as such."""
  if n_from_composition is not None:
    return n_from_composition, "composition"
  lo, hi = model.domain.get("n_atoms", [0, 0])
  if lo == hi and lo > 0:
    return lo, "from the model's domain (trained on %d-atom molecules only)" % lo
  per_atom = getattr(model, "card", {}).get("metrics", {}).get("atom_map_mass_per_atom")
  if mass is not None and per_atom:
    return max(int(round(mass / per_atom)), 1), ESTIMATED
  return len(pairs) + len(centre), ESTIMATED


# --- domain of validity ------------------------------------------------------------

def domain_problems(f_obs, model, n_atoms=None):
  """Ways in which the data lie outside what the model was trained on."""
  d = model.domain
  problems = []
  sg = f_obs.space_group_info()
  if d.get("space_groups") and str(sg).replace(" ", "") not in [s.replace(" ", "") for s in d["space_groups"]]:
    problems.append("space group %s: the model was trained on isolated molecules in %s only; "
                    "the Patterson of a cell holding several symmetry copies has vectors it never saw"
                    % (sg, ", ".join(d["space_groups"])))
  d_min = f_obs.d_min()
  lo, hi = d.get("d_min", [0, 99])
  if d_min > hi + 0.05:
    problems.append("resolution %.2f A is lower than the model's range (%.2f-%.2f A)" % (d_min, lo, hi))
  uc = f_obs.unit_cell()
  shortest = min(uc.length(v) for v in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0),
                                         (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)])
  cell_lo = d.get("cell_edges_A", [0, 0])[0]
  if shortest < cell_lo - 0.5:
    problems.append("the shortest lattice translation (%.1f A) is shorter than the model's smallest "
                    "training cell edge (%.1f A): the molecule's Patterson overlaps its neighbours' "
                    "(the model needs empty space around one molecule)" % (shortest, cell_lo))
  if shortest < model.input_box_edge / 2 + 0.5:
    problems.append("the cell (shortest translation %.1f A) is too small for the model's %.0f A "
                    "Patterson window" % (shortest, model.input_box_edge))
  completeness = f_obs.completeness()
  c_lo = d.get("completeness", [1, 1])[0]
  if completeness < c_lo - 0.1:
    problems.append("completeness %.2f is below the model's range (from %.2f)" % (completeness, c_lo))
  if n_atoms is not None:
    a_lo, a_hi = d.get("n_atoms", [0, 10 ** 6])
    if not a_lo <= n_atoms <= a_hi:
      problems.append("%d atoms is outside the model's range (%d-%d)" % (n_atoms, a_lo, a_hi))
  return problems


# --- the result ---------------------------------------------------------------------

@dataclass
class Result:
  """What p2a.solve found, and how well it explains the data."""
  xray_structure: object
  phases: object             # miller.array: F_obs * exp(i phi_calc), P1
  f_calc: object             # miller.array (complex), P1
  f_obs: object              # the amplitudes used (P1)
  r1: float
  cc: float
  solved: bool
  n_sites: int
  n_sites_source: str        # "composition" or "estimated from the atom map"
  hand_score: float
  model_name: str
  atom_map: np.ndarray
  patterson_grid: np.ndarray
  voxel: float
  original_space_group: str
  notes: list = field(default_factory=list)
  warnings: list = field(default_factory=list)
  timings: dict = field(default_factory=dict)

  def show(self, out=sys.stdout):
    verdict = "SOLVED" if self.solved else "NOT SOLVED"
    print("cctbx_p2a result: %s  (model %s)" % (verdict, self.model_name), file=out)
    print("  sites: %d (%s); hand score CC=%.3f" % (self.n_sites, self.n_sites_source, self.hand_score),
          file=out)
    print("  R1 = %.4f   CC(|Fo|,|Fc|) = %.4f   over %d reflections to %.2f A" % (
      self.r1, self.cc, self.f_obs.size(), self.f_obs.d_min()), file=out)
    if self.original_space_group.replace(" ", "") != "P1":
      print("  data in %s; structure reported in P1 (return to the space group is not done yet)"
            % self.original_space_group, file=out)
    for w in self.warnings:
      print("  WARNING: %s" % w, file=out)
    for n in self.notes:
      print("  note: %s" % n, file=out)
    print("  time: " + ", ".join("%s %.2f s" % kv for kv in self.timings.items()), file=out)
    self.xray_structure.show_scatterers(f=out)

  def as_json_dict(self):
    return {
      "solved": self.solved, "r1": self.r1, "cc": self.cc, "n_sites": self.n_sites,
      "n_sites_source": self.n_sites_source, "hand_score": self.hand_score,
      "model": self.model_name, "space_group_of_data": self.original_space_group,
      "unit_cell": list(self.xray_structure.unit_cell().parameters()),
      "sites_frac": [list(sc.site) for sc in self.xray_structure.scatterers()],
      "labels": [sc.label for sc in self.xray_structure.scatterers()],
      "u_iso": [sc.u_iso for sc in self.xray_structure.scatterers()],
      "d_min": self.f_obs.d_min(), "n_reflections": self.f_obs.size(),
      "warnings": self.warnings, "notes": self.notes, "timings_s": self.timings,
    }


def explains_data(r1, cc, params):
  return r1 <= params.success.r1_max and cc >= params.success.cc_min


def refine(xs, f_obs, params):
  """sites.refine with the refinement PHIL scope."""
  rp = params.refinement
  return sites.refine(xs, f_obs, cycles=rp.cycles, max_iterations=rp.max_iterations,
                      max_reflections=rp.max_reflections)


def finish_structure(xs, f_obs, n_sites, element, params, staged=True):
  """Refine the network's sites, complete them from the phased F_obs map,
  and recycle (dual space) when the model still does not explain the data.
  Returns (structure, R1, CC, F_calc, [what was done])."""
  rp = params.refinement
  steps = []
  if staged and rp.start_d_min and f_obs.d_min() < rp.start_d_min - 0.05:
    # a rough start converges at low resolution first, then all data are used
    low = f_obs.resolution_filter(d_min=rp.start_d_min)
    xs, r1_low, _, _, _ = finish_structure(xs, low, n_sites, element, params, staged=False)
    steps.append("first to %.1f A (R1 %.3f)" % (rp.start_d_min, r1_low))
  refine(xs, f_obs, params)
  if rp.complete and xs.scatterers().size() < n_sites:
    xs, added = sites.complete(xs, f_obs, n_sites, element=element)
    if added:
      steps.append("completion added %d atoms" % added)
      refine(xs, f_obs, params)
  r1, cc, f_calc = sites.r1_and_cc(f_obs, xs)
  steps.append("refined R1 %.3f" % r1)
  if rp.recycle_cycles and not explains_data(r1, cc, params):
    recycled, n_cycles = sites.recycle(xs, f_obs, n_sites, element=element,
                                       max_cycles=rp.recycle_cycles,
                                       max_reflections=rp.max_reflections)
    refine(recycled, f_obs, params)
    r1_new, cc_new, f_calc_new = sites.r1_and_cc(f_obs, recycled)
    steps.append("%d recycling cycles" % n_cycles)
    if r1_new < r1:
      xs, r1, cc, f_calc = recycled, r1_new, cc_new, f_calc_new
  return xs, r1, cc, f_calc, steps


def type_heavy_atoms(xs, fit, f_obs, params, max_atoms=2):
  """When the composition is not known every site starts as carbon; a sulphur
  (or heavier) modelled as carbon drags the scale up and every other U_iso
  with it, and the difference map is then useless for counting.  The atom
  with the lowest refined U_iso, when well below the median, is tried as
  each of sites.heavy_elements.  fit = (R1, CC, F_calc) of xs.
  Returns (structure, its (R1, CC, F_calc), [what was changed])."""
  from cctbx import xray
  changed = []
  for _ in range(max_atoms):
    u = np.array([sc.u_iso for sc in xs.scatterers()])
    light = [i for i, sc in enumerate(xs.scatterers()) if sc.scattering_type not in
             params.sites.heavy_elements]
    if len(light) < 2:
      break
    i = min(light, key=lambda j: u[j])
    if u[i] > 0.5 * np.median(u[light]):
      break
    best = None
    for element in params.sites.heavy_elements:
      scatterers = xs.scatterers().deep_copy()
      scatterers[i].scattering_type = element
      scatterers[i].label = "%s%d" % (element, i + 1)
      trial = refine(xray.structure(crystal_symmetry=xs.crystal_symmetry(), scatterers=scatterers),
                     f_obs, params)
      trial_fit = sites.r1_and_cc(f_obs, trial)
      if best is None or trial_fit[0] < best[1][0]:
        best = (trial, trial_fit, element)
    if best[1][0] > 0.9 * fit[0]:
      break
    xs, fit = best[0], best[1]
    changed.append("site %d as %s (R1 %.3f)" % (i + 1, best[2], fit[0]))
  return xs, fit, changed


def settle_atom_count(xs, fit, f_obs, element, params, max_atoms=None):
  """Let difference maps correct the model: rounds of sites.adjust_atom_count
  + refinement, each kept only if R1 does not rise by more than 0.005.  With
  an estimated count atoms may be added and dropped freely; with a known one
  (max_atoms) a wrong atom can only move to a better peak.  fit = (R1, CC,
  F_calc) of xs.  Returns (structure, R1, CC, F_calc, added, dropped)."""
  sp = params.sites
  r1, cc, f_calc = fit
  added = dropped = 0
  for _ in range(sp.count_rounds):
    trial, n_add, n_drop = sites.adjust_atom_count(
      xs, f_obs, element=element, add_ratio=sp.count_add_ratio, drop_ratio=sp.count_drop_ratio,
      max_atoms=max_atoms)
    if n_add == n_drop == 0:
      break
    refine(trial, f_obs, params)
    r1_trial, cc_trial, f_calc_trial = sites.r1_and_cc(f_obs, trial)
    if r1_trial > r1 + 0.005:
      break
    xs, r1, cc, f_calc = trial, r1_trial, cc_trial, f_calc_trial
    added, dropped = added + n_add, dropped + n_drop
  return xs, r1, cc, f_calc, added, dropped


def network_input(f_obs, model):
  """The model's input grid for amplitudes f_obs, made as its card says.
  Data finer than the card's input_d_min are cut for the Patterson only.  Returns (grid, d_min it was cut at or None)."""
  card_p = model.card.get("patterson", {})
  # cards before input_d_min existed: the finest training resolution
  input_d_min = card_p.get("input_d_min", model.domain.get("d_min", [0, 0])[0])
  f_obs, d_cut = patterson.cut_for_input(f_obs, input_d_min)
  grid = patterson.GridSpec(n=model.card["grid"]["input_n"], voxel=model.voxel)
  x = patterson.model_input(f_obs, grid, resolution_factor=card_p.get("resolution_factor", 0.25),
                            sharpening=card_p.get("sharpening", False),
                            origin_peak_removal=card_p.get("origin_peak_removal", False))
  return x, d_cut


# --- the phasing step -----------------------------------------------------------------

def default_params():
  from cctbx_p2a import phil
  return phil.extract("solve", "reflections")


def solve(f_obs, params=None, model=None, log=None, **overrides):
  """Phase `f_obs` (a miller.array of amplitudes or intensities).

  `params`: extracted PHIL of phil/solve.phil + phil/reflections.phil
  (default_params()); keyword overrides use dotted names with '__' or plain
  dots in a dict, e.g. solve(f, **{"solve.composition": "C10"}).
  """
  from cctbx_p2a import model_files, phil
  if params is None:
    params = phil.extract("solve", "reflections", **overrides)
  elif overrides:
    raise Sorry("Give either params or keyword overrides, not both.")
  timings = {}
  t = time.time()
  if model is None:
    model = model_files.load(params.solve.model)
  timings["load_model"] = time.time() - t

  t = time.time()
  if isinstance(f_obs, reflections.ObservedData):
    observed = f_obs
  else:
    observed = reflections.prepare(f_obs, params.reflections)
  f_obs = observed.f_obs
  notes = list(observed.notes)
  composition = parse_composition(params.solve.composition) if params.solve.composition else None
  n_from_composition = sum(composition.values()) if composition else None
  problems = domain_problems(f_obs, model, n_from_composition)
  warnings = []
  if problems:
    text = "; ".join(problems)
    if not params.solve.force:
      raise Sorry("The data lie outside what model %r was trained for: %s. Use another model, or "
                  "solve.force=True to try anyway (the result is then flagged)." % (model.name, text))
    warnings.append("OUTSIDE THE MODEL'S DOMAIN (force=True): " + text)
  original_sg = str(f_obs.space_group_info())
  if f_obs.space_group().order_z() > 1:
    f_obs = f_obs.expand_to_p1()
    notes.append("expanded %s data to P1 for the Patterson and the network" % original_sg)
  timings["reflections"] = time.time() - t

  t = time.time()
  x, d_cut = network_input(f_obs, model)
  if d_cut is not None:
    notes.append("Patterson input cut at %.2f A, as the model was trained "
                 "(refinement uses all data to %.2f A)" % (d_cut, f_obs.d_min()))
  timings["patterson"] = time.time() - t

  t = time.time()
  atom_map = model.predict(x)
  timings["network"] = time.time() - t

  t = time.time()
  sp = params.sites
  peaks, heights = sites.find_peaks(atom_map, model.voxel, threshold=sp.peak_threshold)
  pairs, centre = sites.inverse_pairs(peaks, heights, tolerance=sp.pair_tolerance)
  n_sites, n_source = atom_count(n_from_composition, model, pairs, centre, sites.atom_map_mass(atom_map))
  if n_source != "composition":
    notes.append("atom count %d %s (its mass; it shows %d inverse pairs + %d at the centre); "
                 "give composition= to set it" % (n_sites, n_source, len(pairs), len(centre)))
  if n_sites == 0:
    raise Sorry("The atom map has no peaks above sites.peak_threshold=%.2f: the network sees no "
                "molecule in this Patterson (data outside its domain?)." % sp.peak_threshold)
  pairs = sorted(pairs, key=lambda p: -p[1])[:max(n_sites - len(centre), 0)]
  element_list = elements_for_sites(composition, n_sites)
  candidates, n_scored = sites.hand_candidates(
    pairs, centre, f_obs, element=element_list[-1], max_reflections=sp.max_reflections,
    exhaustive_limit=sp.exhaustive_limit, seed=params.solve.seed, n_best=sp.hand_candidates)
  notes.append("hand: scored %d choices of %d inverse pairs" % (n_scored, len(pairs)))
  timings["sites"] = time.time() - t

  t = time.time()
  best = None
  for rank, (chosen, score) in enumerate(candidates):
    xs = sites.structure_from_sites(chosen, f_obs.crystal_symmetry(), element_list[:len(chosen)])
    xs, r1, cc, f_calc, steps = finish_structure(xs, f_obs, n_sites, element_list[-1], params)
    notes.append("hand choice %d (CC %.3f): %s; R1 %.3f" % (rank + 1, score, "; ".join(steps), r1))
    if best is None or r1 < best[1]:
      best = (xs, r1, cc, f_calc, score)
    if explains_data(r1, cc, params):
      break
  xs, r1, cc, f_calc, hand_score = best
  if n_source == ESTIMATED and sp.heavy_elements:
    xs, (r1, cc, f_calc), changed = type_heavy_atoms(xs, (r1, cc, f_calc), f_obs, params)
    if changed:
      notes.append("heavy atoms from refined U_iso: " + "; ".join(changed))
  if n_source == ESTIMATED and sp.count_rounds:
    n_before = xs.scatterers().size()
    a_lo, a_hi = model.domain.get("n_atoms", [0, 10 ** 6])
    # an estimate may grow, but not without bound on data the model cannot read
    xs, r1, cc, f_calc, added, dropped = settle_atom_count(
      xs, (r1, cc, f_calc), f_obs, element_list[-1], params, max_atoms=int(1.5 * a_hi))
    n_source = "estimated: %d from the atom map, %+d/-%d by difference maps" % (n_sites, added, dropped)
    if added or dropped:
      notes.append("atom count %d -> %d from difference maps (added %d, dropped %d)"
                   % (n_before, xs.scatterers().size(), added, dropped))
    if not a_lo <= xs.scatterers().size() <= a_hi:
      warnings.append("the estimated atom count %d is outside the model's range (%d-%d)"
                      % (xs.scatterers().size(), a_lo, a_hi))
  elif sp.count_rounds:
    xs, r1, cc, f_calc, added, dropped = settle_atom_count(
      xs, (r1, cc, f_calc), f_obs, element_list[-1], params, max_atoms=n_sites)
    if added or dropped:
      notes.append("difference maps moved %d atoms" % dropped)
  timings["refinement"] = time.time() - t

  xs = sites.relabel(xs)
  solved = explains_data(r1, cc, params) and not warnings
  if warnings and explains_data(r1, cc, params):
    notes.append("R1/CC pass, but the data were outside the model's domain: not marked solved")
  result = Result(
    xray_structure=xs, phases=f_obs.customized_copy(sigmas=None).phase_transfer(f_calc),
    f_calc=f_calc, f_obs=f_obs,
    r1=r1, cc=cc, solved=solved, n_sites=xs.scatterers().size(), n_sites_source=n_source,
    hand_score=hand_score, model_name=model.name, atom_map=atom_map, patterson_grid=x,
    voxel=model.voxel, original_space_group=original_sg, notes=notes, warnings=warnings,
    timings={k: round(v, 3) for k, v in timings.items()})
  if log is not None:
    result.show(out=log)
  return result

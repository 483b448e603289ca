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

from cctbx_p2a import assembly, finishing, known_molecule, patterson, reflections, restraints, sites

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
  """Ways in which the data lie outside what the model was trained on, as
  (kind, text): kind "crystal" when the data are of a packed crystal (a space
  group, or a cell too small for one isolated molecule), "count" for an atom
  count outside the model's range (solve.atom_count_domain), else "data"."""
  d = model.domain
  problems = []
  sg = f_obs.space_group_info()
  if d.get("space_groups") and str(sg).replace(" ", "") not in [s.replace(" ", "") for s in d["space_groups"]]:
    problems.append(("crystal", "space group %s: the model was trained on isolated molecules in %s "
                     "only; the Patterson of a cell holding several symmetry copies has vectors it "
                     "never saw" % (sg, ", ".join(d["space_groups"]))))
  d_min = f_obs.d_min()
  lo, hi = d.get("d_min", [0, 99])
  if d_min > hi + 0.05:
    problems.append(("data", "resolution %.2f A is lower than the model's range (%.2f-%.2f A)"
                     % (d_min, lo, hi)))
  uc = f_obs.unit_cell()
  shortest = min(uc.length(v) for v in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0),
                                         (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)])
  cell_lo = d.get("cell_edges_A", [0, 0])[0]
  if shortest < cell_lo - 0.5:
    problems.append(("crystal", "the shortest lattice translation (%.1f A) is shorter than the "
                     "model's smallest training cell edge (%.1f A): the molecule's Patterson overlaps "
                     "its neighbours' (the model needs empty space around one molecule)"
                     % (shortest, cell_lo)))
  if shortest < model.input_box_edge / 2 + 0.5:
    problems.append(("crystal", "the cell (shortest translation %.1f A) is too small for the "
                     "model's %.0f A Patterson window" % (shortest, model.input_box_edge)))
  completeness = f_obs.completeness()
  c_lo = d.get("completeness", [1, 1])[0]
  if completeness < c_lo - 0.1:
    problems.append(("data", "completeness %.2f is below the model's range (from %.2f)"
                     % (completeness, c_lo)))
  if n_atoms is not None:
    a_lo, a_hi = d.get("n_atoms", [0, 10 ** 6])
    if not a_lo <= n_atoms <= a_hi:
      problems.append(("count", "%d atoms is outside the model's range (%d-%d)" % (n_atoms, a_lo, a_hi)))
  return problems


# --- the result ---------------------------------------------------------------------

@dataclass
class Result:
  """What p2a.solve found, and how well it explains the data.

  The structure, phases and F_calc are in the space group the data were
  solved in: the data's own for the crystal route, P1 for the network route
  (whose models know isolated molecules in P1 only)."""
  xray_structure: object     # the asymmetric unit
  phases: object             # miller.array: F_obs * exp(i phi_calc)
  f_calc: object             # miller.array (complex)
  f_obs: object              # the amplitudes used
  r1: float
  cc: float
  solved: bool
  n_sites: int
  n_sites_source: str        # "composition" or how it was estimated
  hand_score: float          # the kept start's score: the network's hand CC, charge flipping's peak CC, a dual-space trial's CC
  model_name: str            # "none" when the network took no part
  atom_map: object           # np.ndarray, or None when the network took no part
  patterson_grid: object
  voxel: float
  original_space_group: str
  notes: list = field(default_factory=list)
  warnings: list = field(default_factory=list)
  timings: dict = field(default_factory=dict)
  start: str = "network"     # "network", "patterson" (the fallback), "crystal_network", "charge_flipping" or "dual_space": where the kept start came from
  start_detail: str = ""     # which start of its kind, and its score
  atom_map_voxel: float = None   # the atom map's voxel when finer than the Patterson's
  composition: dict = None   # the asymmetric unit's contents as told (hydrogens included), or None

  def show(self, out=sys.stdout):
    verdict = "SOLVED" if self.solved else "NOT SOLVED"
    if self.start == "network":
      print("cctbx_p2a result: %s  (start: network, model %s)" % (verdict, self.model_name), file=out)
      print("  sites: %d (%s); hand score CC=%.3f" % (self.n_sites, self.n_sites_source,
                                                      self.hand_score), file=out)
    elif self.start == "crystal_network":
      print("cctbx_p2a result: %s  (start: crystal network, model %s)" % (verdict, self.model_name),
            file=out)
      print("  sites: %d (%s); start: %s" % (self.n_sites, self.n_sites_source, self.start_detail),
            file=out)
    else:
      print("cctbx_p2a result: %s  (start: %s; the network took no part)"
            % (verdict, self.start.replace("_", " ")), file=out)
      print("  sites: %d (%s); start: %s" % (self.n_sites, self.n_sites_source, self.start_detail),
            file=out)
    print("  R1 = %.4f   CC(|Fo|,|Fc|) = %.4f   over %d reflections to %.2f A" % (
      self.r1, self.cc, self.f_obs.size(), self.f_obs.d_min()), file=out)
    solved_in = str(self.xray_structure.space_group_info())
    print("  structure in %s (data in %s)" % (solved_in, self.original_space_group), file=out)
    for w in self.warnings:
      print("  WARNING: %s" % w, file=out)
    for n in self.notes:
      print("  note: %s" % n, file=out)
    print("  time: " + ", ".join("%s %.2f s" % kv for kv in self.timings.items()), file=out)
    self.xray_structure.show_scatterers(f=out)

  def hydrogens_per_asymmetric_unit(self):
    """The composition's H atoms per asymmetric unit of the structure's own
    space group (P1 when the network route expanded the data), or None."""
    from cctbx import sgtbx
    if not self.composition or not self.composition.get("H"):
      return None
    told_in = sgtbx.space_group_info(self.original_space_group).group().order_z()
    return self.composition["H"] * told_in / self.xray_structure.space_group().order_z()

  def as_json_dict(self):
    return {
      "solved": self.solved, "r1": self.r1, "cc": self.cc, "n_sites": self.n_sites,
      "n_sites_source": self.n_sites_source, "hand_score": self.hand_score,
      "start": self.start, "start_detail": self.start_detail, "model": self.model_name,
      "space_group_of_data": self.original_space_group,
      "space_group": str(self.xray_structure.space_group_info()),
      "unit_cell": list(self.xray_structure.unit_cell().parameters()),
      "sites_frac": [list(sc.site) for sc in self.xray_structure.scatterers()],
      "labels": [sc.label for sc in self.xray_structure.scatterers()],
      "elements": [sc.scattering_type for sc in self.xray_structure.scatterers()],
      "u_iso": [sc.u_iso for sc in self.xray_structure.scatterers()],
      "d_min": self.f_obs.d_min(), "n_reflections": self.f_obs.size(),
      "composition": self.composition,
      "warnings": self.warnings, "notes": self.notes, "timings_s": self.timings,
    }


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

# the PHIL scopes a solve reads: its own, the reflections', and the
# conventional starts' (charge flipping and dual-space for crystals)
SOLVE_SCOPES = ("solve", "reflections", "baselines", "placement")


def default_params():
  from cctbx_p2a import phil
  return phil.extract(*SOLVE_SCOPES)


def solve(f_obs, params=None, model=None, log=None, crystal_model=None, **overrides):
  """Phase `f_obs` (a miller.array of amplitudes or intensities).

  `params`: extracted PHIL of phil/solve.phil, reflections.phil and
  baselines.phil (default_params()); keyword overrides use dotted names with '__' or plain
  dots in a dict, e.g. solve(f, **{"solve.composition": "C10"}).
  `crystal_model`: a loaded crystal network for the crystal route's first
  start (else solve.crystal_model says which, if any).
  """
  from cctbx_p2a import model_files, phil
  if params is None:
    params = phil.extract(*SOLVE_SCOPES, **overrides)
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
    observed = reflections.prepare(f_obs, known_molecule.reflection_params(params))
  f_obs = observed.f_obs
  notes = list(observed.notes)
  # the data's own flags (twinning, absences) are reported; only a domain
  # problem forced past (force=True) keeps a result from being called solved
  data_warnings = list(getattr(observed, "warnings", []) or [])
  warnings = []
  composition = None
  if params.solve.composition:
    composition = parse_composition(params.solve.composition)
  elif getattr(observed, "composition", None):
    # from SFAC/UNIT / Z of the SHELX file (reflections says so in its notes)
    composition = dict(observed.composition)
  models = known_molecule.search_models(params) if (params.solve.molecule or params.solve.smiles) else []
  if models:
    known_composition, components = known_molecule.composition_and_note(params, models)
    if components:
      notes.append(components)
    if composition is None:
      composition = known_composition
      notes.append("composition from the known molecule: %s (one molecule per asymmetric unit)" % " ".join(
        "%s%d" % kv for kv in sorted(composition.items())))
  sites_of = finishing.composition_sites(composition)
  n_from_composition = sum(sites_of.values()) if sites_of else None
  route, why, problems = choose_start(f_obs, model, n_from_composition, params)
  count_warns = params.solve.atom_count_domain == "warn"
  if route == "network" and count_warns:
    data_warnings.extend(count_outside_domain(text) for kind, text in problems if kind == "count")
    problems = [(kind, text) for kind, text in problems if kind != "count"]
  if problems and route == "network":
    text = "; ".join(text for _, text in problems)
    if not params.solve.force:
      raise Sorry("The data lie outside what model %r was trained for: %s. Use another model, or "
                  "solve.force=True to try anyway (the result is then flagged)." % (model.name, text))
    warnings.append("OUTSIDE THE MODEL'S DOMAIN (force=True): " + text)
  original_sg = str(f_obs.space_group_info())
  timings["reflections"] = time.time() - t

  chosen = {}   # the crystal network that made a start, if any
  if route == "network":
    if f_obs.space_group().order_z() > 1:
      f_obs = f_obs.expand_to_p1()
      notes.append("expanded %s data to P1 for the Patterson and the network; the structure is "
                   "reported in P1" % original_sg)
    starts, n_sites, n_source, network_output = network_starts(
      f_obs, model, params, n_from_composition, sites_of, notes, timings)
  else:
    notes.append("start: %s" % why)
    n_sites, n_source = crystal_atom_count(f_obs, params, n_from_composition, notes)
  a_lo, a_hi = model.domain.get("n_atoms", [0, 10 ** 6]) if route == "network" else (0, 10 ** 6)
  max_atoms = int(1.5 * (a_hi if route == "network" else n_sites))

  def finish_start(xs, keep_elements=False):
    # a known molecule's atoms are the search model's, 1:1: its geometry restrains the refinement
    return finishing.finish(xs, f_obs, params, n_sites, composition=sites_of,
                            count_known=n_from_composition is not None, max_atoms=max_atoms,
                            keep_elements=keep_elements,
                            restraints=restraints.for_known_molecule(xs, params) if keep_elements else None)

  if route != "network":
    starts = crystal_starts(f_obs, params, n_sites, finishing.most_common_element(sites_of), route,
                            notes, timings, crystal_model=crystal_model, chosen=chosen,
                            finish=finish_start, models=models, composition=sites_of)
    network_output = (None, None)

  t = time.time()
  best, n_listed, n_finished, more_starts = None, 5, 0, None
  # the elements rule is measured on crystals only (docs/crystals.md)
  crystal_composition = sites_of if route != "network" else None
  # a start may come finished already (dual-space candidates are finished side by side)
  # starts may be a generator (crystal routes): read once, in order
  fallback_said = False
  for rank, (xs, score, kind, what, done) in enumerate(starts):
    if kind == "patterson" and not fallback_said:  # the fallback's starts come last (network_starts)
      fallback_said = True
      notes.append("fallback: no start from the network explains the data; up to %d hand choices of "
                   "the Patterson's own strongest vectors follow (solve.patterson_starts)"
                   % params.solve.patterson_starts)
    if done is None:
      done = finish_start(xs, keep_elements=kind == "known_molecule")
    rigid = rigid_fit((xs, score), done.xray_structure) if kind == "known_molecule" else None
    explained = verdict(done.xray_structure, done.r1, done.cc, f_obs, params,
                        checks_chemistry(params, route, model, done.xray_structure),
                        elements_known=bool(sites_of), n_expected=n_from_composition,
                        composition=crystal_composition, rigid=rigid)[0]
    n_finished = rank + 1
    if rank < n_listed or explained:  # hundreds of dual-space starts would flood the log
      notes.append("start %d (%s %.3f): %s; R1 %.3f%s" % (
        rank + 1, what, score, "; ".join(done.steps), done.r1, ", explains the data" if explained else ""))
    # the first start the verdict accepts ends the search (but see heavy_atom_more_starts); else the
    # lowest R1
    if best is None or (explained, -done.r1) > (best[2], -best[0].r1):
      best = (done, score, explained, kind, "%s %.3f" % (what, score), rigid)
    if explained and more_starts is None:
      heavy = finishing.heavy_scattering_fraction(done.xray_structure)
      more_starts = params.solve.heavy_atom_more_starts if route == "network" and heavy > 0.5 else 0
      if more_starts:
        notes.append("atoms heavier than Ne carry %.0f %% of the scattering, so R1 hardly sees the light "
                     "atoms: up to %d more starts are finished and the accepted one of lowest R1 kept "
                     "(solve.heavy_atom_more_starts)" % (100 * heavy, more_starts))
    elif more_starts is not None:
      more_starts -= 1
    if more_starts is not None and more_starts <= 0:
      break
  if n_finished > n_listed:
    notes.append("%d starts finished in all (the first %d listed above); the kept one: %s: %s; R1 %.3f"
                 % (n_finished, n_listed, best[4], "; ".join(best[0].steps), best[0].r1))
  if best is None:  # only a start=dual_space search whose budget ended before its first trial
    raise Sorry("No start was finished: %s. Raise baselines.dual_space.max_seconds (a trial "
                "of %d atoms in this cell takes longer), or leave solve.start=auto, which starts "
                "with charge flipping." % ("; ".join(notes[-1:]) or "no trial finished", n_sites))
  done, start_score, _, start_kind, start_detail, rigid = best
  xs, r1, cc, f_calc = done.xray_structure, done.r1, done.cc, done.f_calc
  # the same crystal as a crystallographer opens it: each molecule whole, atoms named by element;
  # before the verdict, so that the labels its notes name are the labels of the files
  xs = assembly.whole_molecules(xs)
  if n_source != "composition":
    n_source = done.n_sites_source.replace("estimated", "estimated from the %s" % (
      "atom map" if route == "network" else "cell volume"))
    if route == "network" and not a_lo <= xs.scatterers().size() <= a_hi:
      text = "the estimated atom count %d is outside the model's range (%d-%d)" % (
        xs.scatterers().size(), a_lo, a_hi)
      if count_warns:
        data_warnings.append(count_outside_domain(text))
      else:
        warnings.append(text)
  # crystal starts are made inside the loop: their own time (the dual-space
  # trials' including the candidates finished side by side) is not refinement's
  timings["refinement"] = time.time() - t - sum(
    timings.get(k, 0.0) for k in ("crystal_network", "placement", "charge_flipping", "dual_space",
                                  "known_molecule"))

  bonded = checks_chemistry(params, route, model, xs)
  explained, reasons = verdict(xs, r1, cc, f_obs, params, bonded,
                               elements_known=bool(sites_of), n_expected=n_from_composition,
                               composition=crystal_composition, rigid=rigid)
  withheld = bonded_claim_withheld(f_obs, bonded, rigid, params) if explained else None
  if withheld:
    # the search above still stops at the first model that explains the data; only the claim waits
    explained = False
    reasons.append(withheld)
  if explained and rigid is not None and not finishing.enough_data(f_obs, xs.scatterers().size(), params,
                                                                    finishing.refined_parameters(xs)):
    notes.append("%d unique reflections are fewer than success.min_data_per_parameter=%.1f per free-atom "
                 "parameter; the claim rests on the known molecule's rigid fit (7 parameters): CC %.3f, "
                 "%.0f %% of its atoms kept within 0.5 A by the finishing" % (
                   f_obs.size(), params.success.min_data_per_parameter, rigid[0], 100 * rigid[1]))
  solved = explained and not warnings
  warnings = data_warnings + warnings
  for reason in reasons:
    notes.append("not solved: " + reason)
  if explained and not solved:
    notes.append("the data are explained, but outside the model's domain: not marked solved")
  atom_map, patterson_grid = network_output
  result = Result(
    xray_structure=xs, phases=f_obs.customized_copy(sigmas=None).phase_transfer(f_calc),
    f_calc=f_calc, f_obs=f_obs,
    r1=r1, cc=cc, solved=solved, n_sites=xs.scatterers().size(), n_sites_source=n_source,
    hand_score=start_score, model_name=model.name if start_kind == "network" else (
      chosen.get("crystal_model", "none") if start_kind == "crystal_network" else "none"),
    atom_map=atom_map, patterson_grid=patterson_grid,
    voxel=model.voxel, original_space_group=original_sg, notes=notes, warnings=warnings,
    timings={k: round(v, 3) for k, v in timings.items()}, start=start_kind,
    start_detail=start_detail, atom_map_voxel=model.output_voxel if route == "network" else None,
    composition=dict(composition) if composition else None)
  if log is not None:
    result.show(out=log)
  return result


def model_knows_bonds(model):
  """False for models trained on the paper's points (at least 2 A apart),
  whose solutions have no bonds to check."""
  synthetic = model.card.get("training_data", {}).get("synthetic", {})
  if synthetic.get("molecule_source", "points") in ("molecules", "store"):
    return True
  return synthetic.get("min_distance", 0.0) < 2.0


def checks_chemistry(params, route, model, xs):
  """success.chemistry_check resolved: with auto, real chemistry is checked;
  the paper's isolated points (a model trained on them, and a structure
  without a single bond) are not."""
  chemistry = str(params.success.chemistry_check)
  if chemistry == "auto":
    return route != "network" or model_knows_bonds(model) or finishing.claims_bonds(xs)
  return chemistry == "True"  # a PHIL choice extracts as text: "False" must not count as true


def verdict(xs, r1, cc, f_obs, params, chemistry=True, elements_known=True, n_expected=None,
            composition=None, rigid=None):
  """Whether a structure explains the data, and if not, why: R1 and CC;
  enough reflections per parameter for R1 to mean something; no atom smeared
  out to a U_iso the data cannot see (elements_known: typed from a
  composition, see finishing.suspect_atoms); the composition's n_expected
  atoms all placed; (with `composition`, element -> sites) the
  composition's elements in the model; and (with chemistry) atoms at bond
  lengths from one another.  rigid = (CC of a known molecule's rigid
  placement, share of the finished atoms within 0.5 A of it): a good rigid
  fit stands in for the reflections-per-parameter rule.  Returns (bool,
  [why not])."""
  sp = params.success
  reasons = []
  n_placed = xs.scatterers().size()
  if n_expected is not None and n_placed < n_expected - sp.max_atoms_missing:
    reasons.append("%d of the composition's %d non-H atoms placed: an incomplete structure "
                   "(success.max_atoms_missing=%d)" % (n_placed, n_expected, sp.max_atoms_missing))
  if r1 > sp.r1_max:
    reasons.append("R1 %.3f is above success.r1_max=%.2f" % (r1, sp.r1_max))
  if cc < sp.cc_min:
    reasons.append("CC %.3f is below success.cc_min=%.2f" % (cc, sp.cc_min))
  suspect = finishing.suspect_atoms(xs, sp, elements_known)
  if suspect.any():
    u = [sc.u_iso for sc in xs.scatterers()]
    reasons.append("%s refined to U_iso %s: atoms the data do not see (at or above success.max_u_iso="
                   "%.2f A^2%s)" % (
                     ", ".join(sc.label for sc, s in zip(xs.scatterers(), suspect) if s),
                     ", ".join("%.2f" % v for v, s in zip(u, suspect) if s), sp.max_u_iso,
                     ", or above %.1fx the median %.3f, success.u_iso_outlier_ratio" % (
                       sp.u_iso_outlier_ratio, float(np.median(u))) if elements_known else ""))
  wrong_elements = finishing.elements_differ(xs, composition)
  if wrong_elements and finishing.reaches(f_obs, sp.composition_elements_d_min):
    reasons.append("the model holds %s where the composition says %s: its elements could not be "
                   "placed by density without raising R1 (success.composition_elements_d_min=%.1f A)"
                   % (wrong_elements[0], wrong_elements[1], sp.composition_elements_d_min))
  # a known molecule may have been refined with one U_iso for all atoms (known_molecule_one_u_iso)
  n_parameters = finishing.refined_parameters(xs) if rigid is not None else 4 * n_placed
  if not finishing.enough_data(f_obs, n_placed, params, n_parameters) and not rigid_fit_holds(rigid, params):
    reasons.append("%d unique reflections for %d atoms (%d parameters) are too few to tell a right "
                   "structure from a refined wrong one (success.min_data_per_parameter=%.1f)%s"
                   % (f_obs.size(), n_placed, n_parameters, sp.min_data_per_parameter,
                      "" if rigid is None else "; nor does the known molecule's rigid fit carry the "
                      "claim: CC %.3f, %.0f %% of the atoms kept within 0.5 A (success.rigid_body_cc_min="
                      "%.2f, rigid_body_kept=%.2f)" % (rigid[0], 100 * rigid[1], sp.rigid_body_cc_min,
                                                       sp.rigid_body_kept)))
  if chemistry:
    fraction = finishing.bonded_fraction(xs)
    if fraction < sp.min_bonded_fraction:
      reasons.append("only %.0f %% of the atoms lie at a bond length from a neighbour "
                     "(success.min_bonded_fraction=%.2f)" % (100 * fraction, sp.min_bonded_fraction))
    lone = finishing.lone_carbons(xs)
    if lone and elements_known and finishing.reaches(f_obs, sp.lone_carbon_d_min):
      reasons.append("%s: carbon with no atom at a bond length, or a C-C or C-halogen pair bonded to nothing else, "
                     "which no molecule has (success.lone_carbon_d_min=%.1f A)" % (
                       ", ".join(xs.scatterers()[i].label for i in lone[:4]), sp.lone_carbon_d_min))
    impossible = finishing.impossible_contacts(xs, **finishing.contact_tolerances(f_obs.d_min()))
    if sp.max_impossible_contacts is not None and len(impossible) > sp.max_impossible_contacts:
      labels = [sc.label for sc in xs.scatterers()]
      reasons.append("%d contact(s) no molecule has, too long for a bond and too short for anything "
                     "else, or too short for any bond: %s (success.max_impossible_contacts=%d)" % (
                       len(impossible), ", ".join("%s-%s %.2f A" % (labels[i], labels[j], d)
                                                  for i, j, d, _ in impossible[:4]),
                       sp.max_impossible_contacts))
  return not reasons, reasons


def bonded_claim_withheld(f_obs, bonded, rigid, params):
  """Why a model that explains the data is still not called solved, or None:
  beyond success.bonded_claim_d_min, bonded atoms 1.2-1.5 A apart are not
  resolved and a wrong model refines as well as the right one, unless a
  known molecule's rigid fit carries the claim."""
  claim_limit = params.success.bonded_claim_d_min
  if (not bonded or claim_limit is None or finishing.reaches(f_obs, claim_limit)
      or rigid_fit_holds(rigid, params)):
    return None
  return ("the data reach %.2f A only: beyond success.bonded_claim_d_min=%.1f A bonded atoms "
          "1.2-1.5 A apart are not resolved and a wrong model refines as well as the right one, "
          "so a model that explains the data is not called solved (check it)" % (f_obs.d_min(), claim_limit))


def rigid_fit_holds(rigid, params):
  """Whether a known molecule's rigid placement (CC, share of atoms kept)
  carries a claim that the reflections per free-atom parameter cannot."""
  sp = params.success
  return rigid is not None and rigid[0] >= sp.rigid_body_cc_min and rigid[1] >= sp.rigid_body_kept


def rigid_fit(start, finished):
  """(CC of the rigid placement, share of its atoms that the finished
  structure keeps within 0.5 A, origin shifts allowed) for a known-molecule
  start; the CC comes with the start."""
  from cctbx_p2a import baselines
  xs, cc = start
  kept = baselines.score_against_reference(xs, finished, tolerance=0.5)["n_matched"]
  return cc, kept / max(1, xs.scatterers().size())


def count_outside_domain(text):
  """The warning for an atom count outside the model's range under
  solve.atom_count_domain=warn: said plainly, and not held against a model
  the verdict accepts."""
  return ("%s: the network's map is less sure there; the finished model is judged by the verdict "
          "on the data alone (solve.atom_count_domain=refuse refuses such data)" % text)


def choose_start(f_obs, model, n_atoms, params):
  """Which start the data get: (route, why, the model's domain problems).

  The network when the model's domain covers the data.  A packed crystal --
  a space group other than P1, or a cell too small for one isolated molecule
  -- is outside every shipped model, and with start=auto gets the
  conventional starts in its own space group: charge flipping (smtbx), then,
  while nothing is solved, dual-space trials (cctbx_p2a.dual_space).  The
  finishing is the same, and the log says the network took no part.
  solve.force only lets the network run outside its domain (start=network)."""
  problems = domain_problems(f_obs, model, n_atoms)
  choice = params.solve.start
  if params.solve.molecule or params.solve.smiles:
    given = "solve.molecule" if params.solve.molecule else "solve.smiles"
    placed = ("the known molecule (%s) placed in %s by a Patterson rotation search, the translation "
              "function and a rigid body; the network took no part" % (given, f_obs.space_group_info()))
    if choice == "molecule":
      return "known_molecule", placed + " (start=molecule)", problems
    if choice == "auto":
      return "known_molecule+conventional", placed + "; then, while nothing is solved, charge flipping " \
        "and dual-space trials", problems
    raise Sorry("%s is a start of its own, and solve.start=%s asks for another. Leave solve.start=auto "
                "(the molecule, then the conventional starts) or set solve.start=molecule." % (given, choice))
  if choice == "molecule":
    raise Sorry("solve.start=molecule needs the molecule: solve.molecule=FILE (%s) or solve.smiles=..."
                % known_molecule.FORMATS)
  if choice == "network":
    return "network", "the network (start=network)", problems
  if choice == "charge_flipping":
    return "charge_flipping", "charge flipping (start=charge_flipping)", problems
  if choice == "dual_space":
    return "dual_space", "dual-space trials (start=dual_space)", problems
  crystal = [text for kind, text in problems if kind == "crystal"]
  if crystal:
    d_min = f_obs.d_min()
    caveat = "" if d_min <= 1.2 else (" -- at %.2f A, beyond the atomic resolution that direct "
                                      "methods need, expect no solution" % d_min)
    return "conventional", ("charge flipping (smtbx), then dual-space trials while nothing is solved, "
                            "in %s; the network took no part: model %r knows isolated molecules "
                            "only (%s)%s" % (f_obs.space_group_info(), model.name, crystal[0],
                                             caveat)), problems
  return "network", "the network", problems


def network_starts(f_obs, model, params, n_from_composition, sites_of, notes, timings):
  """Patterson -> atom map -> peaks -> inverse pairs -> the best hand choices.
  Returns ([(P1 xray.structure, hand score, "network", what it is), ...], n_sites,
  n_source, (atom map, Patterson grid))."""
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
  peaks, heights = sites.find_peaks(atom_map, model.output_voxel, threshold=sp.peak_threshold)
  pairs, centre = sites.inverse_pairs(peaks, heights, tolerance=sp.pair_tolerance)
  n_sites, n_source = atom_count(n_from_composition, model, pairs, centre, sites.atom_map_mass(atom_map))
  if n_source != "composition":
    notes.append("atom count %d %s (its mass; it shows %d inverse pairs + %d at the centre); "
                 "give composition= to set it" % (n_sites, n_source, len(pairs), len(centre)))
  if n_sites == 0:
    raise Sorry("The atom map has no peaks above sites.peak_threshold=%.2f: the network sees no "
                "molecule in this Patterson (data outside its domain?)." % sp.peak_threshold)
  element_list = finishing.elements_for_sites(sites_of, n_sites)
  starts, n_scored, n_pairs = hand_choice_starts(pairs, centre, n_sites, f_obs, element_list, params,
                                                 sp.hand_candidates, "network", "hand choice")
  notes.append("hand: scored %d choices of %d inverse pairs" % (n_scored, n_pairs))
  starts += patterson_fallback_starts(f_obs, model, x, n_sites, element_list, params)
  timings["sites"] = time.time() - t
  return starts, n_sites, n_source, (atom_map, x)


def patterson_fallback_starts(f_obs, model, x, n_sites, element_list, params):
  """Starts read from the Patterson window itself (its strongest vectors as
  inverse pairs, the hand chosen as for the network's), finished only when
  none of the network's starts explains the data.  Why: the network's map
  can hold too few pairs for a molecule beyond its training (issue 11's
  suite: 64 -> 72 of 100 solved, none lost; docs/molecules.md)."""
  n_best = params.solve.patterson_starts
  if not n_best:
    return []
  sp = params.sites
  edge = model.card["grid"]["output_n"] * model.output_voxel
  p_map = patterson.window_as_atom_map(x, model.voxel, edge)
  peaks, heights = sites.find_peaks(p_map, model.voxel, threshold=sp.peak_threshold)
  pairs, centre = sites.inverse_pairs(peaks, heights, tolerance=sp.pair_tolerance)
  if not pairs and not centre:
    return []
  return hand_choice_starts(pairs, centre, n_sites, f_obs, element_list, params, n_best,
                            "patterson", "Patterson hand choice")[0]


def hand_choice_starts(pairs, centre, n_sites, f_obs, element_list, params, n_best, kind, what):
  """The n_best hand choices of the strongest inverse pairs (as many as the
  n_sites atoms need beside the centre's) as start structures.  Returns
  ([(P1 xray.structure, hand score, kind, what, None), ...], choices scored,
  pairs used)."""
  sp = params.sites
  pairs = sorted(pairs, key=lambda p: -p[1])[:max(n_sites - len(centre), 0)]
  candidates, n_scored = sites.hand_candidates(
    pairs, centre, f_obs, element=element_list[-1], max_reflections=sp.max_reflections,
    exhaustive_limit=sp.exhaustive_limit, seed=params.solve.seed, n_best=n_best)
  starts = [(sites.structure_from_sites(chosen, f_obs.crystal_symmetry(), element_list[:len(chosen)]),
             score, kind, "%s %d, score" % (what, i + 1), None)
            for i, (chosen, score) in enumerate(candidates)]
  return starts, n_scored, len(pairs)


def crystal_atom_count(f_obs, params, n_from_composition, notes):
  """(n_sites, source) for a crystal start.  Without a composition the
  asymmetric unit is taken to hold one non-H atom per solve.volume_per_atom
  A^3 (Kempster & Lipson: about 18 for organic crystals), and difference
  maps settle the count."""
  volume = f_obs.unit_cell().volume() / f_obs.space_group().order_z()
  if n_from_composition is not None:
    n_sites, n_source = n_from_composition, "composition"
    per_atom = volume / n_sites
    if per_atom > 2.2 * params.solve.volume_per_atom:
      notes.append("the asymmetric unit (%.0f A^3) has room for about %d non-H atoms, %.1f times the "
                   "%d of the composition: Z' > 1 or solvent? Only the composition's atoms are "
                   "placed; give the whole asymmetric unit's content to place the rest"
                   % (volume, volume / params.solve.volume_per_atom,
                      volume / params.solve.volume_per_atom / n_sites, n_sites))
    elif per_atom < 0.5 * params.solve.volume_per_atom:
      notes.append("the composition's %d non-H atoms would fill only %.0f A^3 each of the %.0f A^3 "
                   "asymmetric unit: is it the content of the whole cell? (SHELX UNIT counts the "
                   "cell; composition= means the asymmetric unit)" % (n_sites, per_atom, volume))
  else:
    n_sites = max(int(round(volume / params.solve.volume_per_atom)), 1)
    n_source = "estimated"
    notes.append("atom count %d estimated from the cell volume (%.0f A^3 per asymmetric unit / %.0f "
                 "A^3 per non-H atom); give composition= to set it" % (
                   n_sites, volume, params.solve.volume_per_atom))
  return n_sites, n_source


def crystal_model_for(f_obs, params, notes, crystal_model=None):
  """The crystal network for these data (solve.crystal_model), or None --
  with a note saying why none runs when one was named or shipped."""
  from libtbx import Auto
  from cctbx_p2a import model_files
  choice = params.solve.crystal_model
  choice = "auto" if choice is Auto else str(choice or "none").strip()
  if crystal_model is None:
    if choice.lower() == "none":
      return None
    names = model_files.shipped_crystal_models() if choice == "auto" else [choice]
    if not names:
      return None
    candidates = [model_files.load(n) for n in names]
  else:
    candidates = [crystal_model]
  for model in candidates:
    problems = crystal_domain_problems(f_obs, model)
    if not problems:
      return model
    if params.solve.force:
      notes.append("crystal network %s outside its domain (force=True): %s" % (model.name, "; ".join(problems)))
      return model
    notes.append("crystal network %s skipped: %s" % (model.name, "; ".join(problems)))
  return None


def crystal_domain_problems(f_obs, model):
  """Why a crystal network's card does not cover these data: the
  space-group type (any setting of a type it was trained on will do) and
  the resolution."""
  from cctbx import sgtbx
  d = model.domain
  problems = []
  number = f_obs.space_group_info().type().number()
  known = sorted({sgtbx.space_group_info(s).type().number() for s in d.get("space_groups", [])})
  if number not in known:
    problems.append("space group %s (No. %d) is not among those it was trained on (%s)" % (
      f_obs.space_group_info(), number, ", ".join(d.get("space_groups", [])) or "none"))
  lo, hi = d.get("d_min", [0, 99])
  if f_obs.d_min() > hi + 0.05:
    problems.append("resolution %.2f A is lower than its range (%.2f-%.2f A)" % (f_obs.d_min(), lo, hi))
  return problems


def crystal_network_start(f_obs, model, n_sites, params, notes, timings):
  """Patterson -> crystal network -> the image (its n_sites highest peaks)
  -> every Laue orientation x translation function -> CC -> rigid body
  (cctbx_p2a.placement).  Returns (xray.structure, CC) or None."""
  from cctbx_p2a import placement
  t = time.time()
  x, d_cut = network_input(f_obs, model)
  atom_map = model.predict(x)
  image = placement.image_from_atom_map(atom_map, model.output_voxel, n_sites,
                                        threshold=params.sites.peak_threshold)
  timings["crystal_network"] = time.time() - t
  if image is None or len(image.sites_cart) < 3:
    notes.append("crystal network %s: its map shows %d peaks above %.2f; no start from it" % (
      model.name, 0 if image is None else len(image.sites_cart), params.sites.peak_threshold))
    return None
  t = time.time()
  placed = placement.place_rigid(f_obs, image, params)
  timings["placement"] = time.time() - t
  notes.append("crystal network %s: image of %d peaks%s, placed in %d Laue orientations, CC %.3f" % (
    model.name, len(image.sites_cart), "" if d_cut is None else " (Patterson cut at %.2f A)" % d_cut,
    placed.n_orientations, placed.rigid.cc))
  return placed.rigid.xray_structure, placed.rigid.cc


def crystal_starts(f_obs, params, n_sites, element, route, notes, timings, crystal_model=None,
                   chosen=None, finish=None, models=(), composition=None):
  """The starts in the data's space group, made only when asked for (the
  caller stops at the first solved one): the crystal network's placed image
  when one is chosen (crystal_model_for) or the known molecules placed
  (route known_molecule..., cctbx_p2a.known_molecule), charge flipping (smtbx; its map's
  highest peaks), then the best dual-space trials round by round
  (cctbx_p2a.dual_space) until baselines.dual_space.n_trials or
  max_seconds.  Yields (xray.structure, score, kind of start, what it is,
  finish(xray.structure) or None): dual-space trials come finished, side by
  side on the trials' processes (None without finish); the others not."""
  from cctbx_p2a import baselines, dual_space
  if route.startswith("known_molecule"):
    yield from known_molecule.starts(f_obs, params, models, notes, timings, composition)
    if route == "known_molecule":
      return
    route = "conventional"
  if route == "conventional":
    model = crystal_model_for(f_obs, params, notes, crystal_model)
    placed = crystal_network_start(f_obs, model, n_sites, params, notes, timings) if model else None
    if placed is not None:
      if chosen is not None:
        chosen["crystal_model"] = model.name
      yield placed[0], placed[1], "crystal_network", "crystal network %s placed, CC" % model.name, None
  if route in ("conventional", "charge_flipping"):
    t = time.time()
    flipped = baselines.charge_flipping(f_obs, n_sites=n_sites, scattering_type=element,
                                        seed=params.solve.seed, params=params.baselines)
    notes.append("charge flipping: %d start(s), %s; CC of its peaks %.3f" % (
      flipped.n_trials, "a solution accepted" if flipped.phases is not None else "none accepted",
      flipped.fom))
    timings["charge_flipping"] = time.time() - t
    yield (flipped.xray_structure, flipped.fom, "charge_flipping", "charge flipping, CC of its peaks",
           None)
  if route in ("conventional", "dual_space"):
    ds = params.baselines.dual_space
    notes.append("dual-space trials: up to %d in %.0f s, the best %d of every %d finished" % (
      ds.n_trials, ds.max_seconds, ds.finish_per_round, ds.trials_per_round))
    t = time.time()
    n_run = 0
    for trial, n_run, finished in dual_space.best_of_rounds(
        f_obs, n_sites, ds, element, params.solve.seed,
        min_distance=params.baselines.peak_search.min_distance, finish=finish):
      timings["dual_space"] = timings.get("dual_space", 0.0) + time.time() - t
      yield (trial.xray_structure, trial.cc, "dual_space",
             "dual-space trial %d (%d run), CC after its brief refinement" % (trial.index + 1, n_run),
             finished)
      t = time.time()
    timings["dual_space"] = timings.get("dual_space", 0.0) + time.time() - t
    if n_run < ds.n_trials:
      # the safety net bound: how many trials fit depends on the machine and its load
      notes.append("dual-space: %d of %d trials run before baselines.dual_space.max_seconds=%.0f s "
                   "ended the search (wall time, so this result depends on the machine's speed and "
                   "load; a larger max_seconds runs the whole trial budget and is reproducible)"
                   % (n_run, ds.n_trials, ds.max_seconds))
    else:
      notes.append("dual-space: %d trials run" % n_run)

"""Comparing phasing methods fairly: same data, same scoring, same clock.

Every method gets the same prepared amplitudes and the same composition (the
number of atoms), and every solution is scored alike: emma matches it to the
truth allowing origin shifts and the inverse hand; a case is solved when every
atom lies within `tolerance` A.  Methods:

* ``p2a``: the full phasing step (network, hand, refinement);
* ``network``: the network's raw read-out scored as in the paper (mean
  distance of true atoms and inverses to the nearest peak) -- synthetic only;
* ``network_untrained``: the same read-out of the untrained control below
  (its map on a trained map's scale), the control for ``network``;
* ``random_recycling``: p2a's own refinement and dual-space recycling started
  from random sites (5 starts);
* ``p2a_untrained``: the control that shows what the network adds -- p2a's
  whole pipeline (same parameters, told the composition) with the trained
  network replaced by an untrained one of the same architecture (torch's
  default initialisation, seeded by CONTROL_SEED, run by the same numpy
  engine);
* ``p2a_patterson``: the same pipeline reading the Patterson window itself
  (origin peak removed, cropped to the output window) as the atom map,
  with solve.patterson_starts off (p2a's fallback would repeat its starts).

  Both control maps are put on a trained map's scale (background at 0,
  highest point 0.5) so that the peak picker's absolute threshold does not
  fail them before the rest of the pipeline can work: an untrained network's
  raw map lies below sites.peak_threshold everywhere and would be an empty,
  too easy, control.
* the baselines of cctbx_p2a.baselines (charge flipping, tangent formula).

Cases run in parallel over all cores, one process per core, each with one
torch thread.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a.finishing import composition_counts  # noqa: F401  (callers reach it here too)

SUITES = {
  # the paper's case: 10 C atoms, 40 A cubic P1 cell, 2.0 A, no noise
  "paper": {},
  # the broader distribution of the realistic model (issue: beyond the simplified case)
  "realistic": {"n_atoms": [4, 20], "elements": ["C", "N", "O"], "heavy_atom_fraction": 0.3,
                "u_iso": [0.01, 0.06], "d_min": [1.0, 3.0], "noise": [0.0, 0.1],
                "completeness": [0.8, 1.0], "random_cell": True, "observation": "intensities"},
  # real molecules alone in P1 cells (cctbx_p2a.molecules: NCI compounds, BRICS
  # recombinations, metal complexes; hydrogens scatter, n_atoms counts non-H
  # atoms) with the realistic suite's U_iso, noise, completeness and cells
  "molecules": {"molecule_source": "molecules", "n_atoms": [6, 40], "u_iso": [0.01, 0.06],
                "d_min": [1.0, 2.5], "noise": [0.0, 0.1], "completeness": [0.8, 1.0],
                "random_cell": True, "observation": "intensities"},
}
# methods that run p2a.solve, and need the trained model (or its card)
SOLVE_METHODS = ("p2a", "p2a_estimated_count", "p2a_untrained", "p2a_patterson")
READ_OUT_METHODS = ("network", "network_untrained")   # raw read-outs, synthetic suites only
CONTROL_SEED = 0
SWEEPABLE = {"d_min": "range", "noise": "range", "completeness": "range", "n_atoms": "range",
             "cell_edge": "cell"}
COMPARE_STREAM = 3


def synthetic_params(suite, overrides=None):
  """The `synthetic` scope for a suite, with sweep overrides (name -> value)."""
  from cctbx_p2a import phil
  settings = dict(SUITES[suite])
  for name, value in (overrides or {}).items():
    if name == "cell_edge":
      settings["unit_cell"] = [value, value, value, 90, 90, 90]
      settings["random_cell"] = False
    elif SWEEPABLE.get(name) == "range":
      settings[name] = [value, value]
    else:
      settings[name] = value
  return phil.extract("synthetic", **{"synthetic." + k: v for k, v in settings.items()}).synthetic


def parse_sweep(text):
  """'d_min=1.0,1.5,2.0' -> ('d_min', [1.0, 1.5, 2.0])."""
  if not text:
    return None, [None]
  name, _, values = text.partition("=")
  name = name.strip()
  if name not in SWEEPABLE:
    raise Sorry("Cannot sweep %r: choose one of %s (e.g. sweep=d_min=1.0,1.5,2.0)."
                % (name, ", ".join(SWEEPABLE)))
  try:
    vals = [float(v) for v in values.replace(" ", ",").split(",") if v]
  except ValueError:
    raise Sorry("sweep values must be numbers: sweep=%s" % text)
  if not vals:
    raise Sorry("No values in sweep=%s (e.g. sweep=d_min=1.0,1.5,2.0)." % text)
  if name == "n_atoms":
    vals = [int(v) for v in vals]
  return name, vals


def parse_fixed(text):
  """'d_min=2.5 noise=0' -> {'d_min': 2.5, 'noise': 0.0}."""
  fixed = {}
  for item in (text or "").split():
    name, vals = parse_sweep(item)
    if len(vals) != 1:
      raise Sorry("fix takes one value per name: fix=%s" % item)
    fixed[name] = vals[0]
  return fixed


# --- one case, one method (runs in a worker process) -------------------------------

_MODEL = None
_BASELINES = None
_SOLVE = None


def _worker_init(model_name, baselines_params=None, solve_params=None):
  """Per process: one torch thread, the model loaded once, the baselines'
  and p2a's settings."""
  if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)
  global _MODEL, _BASELINES, _SOLVE
  if model_name:
    from cctbx_p2a import model_files
    _MODEL = model_files.load(model_name)
  _BASELINES = baselines_params
  _SOLVE = solve_params


def main_element(xray_structure):
  """The most common element: what methods told only the atom count place."""
  counts = composition_counts(xray_structure)
  return max(counts, key=counts.get)


def composition_of(xray_structure):
  return "".join("%s%d" % kv for kv in composition_counts(xray_structure).items())


_CONTROLS = {}


def untrained_model(trained, seed=CONTROL_SEED):
  """A network of `trained`'s architecture and grids with torch's default
  initialisation (seeded) and no training, under the same card (its
  Patterson settings, domain and voxel), run by the same engine."""
  import copy
  import torch
  from cctbx_p2a import inference, network
  card = copy.deepcopy(trained.card)
  arch, grid = card["architecture"], card["grid"]
  torch.manual_seed(seed)
  net = network.build_from_card(arch, grid)
  card["name"] = "%s_untrained_seed%d" % (trained.name, seed)
  card.pop("metrics", None)  # the trained model's mass per atom etc. do not apply
  card["training"] = {"steps": 0, "note": "untrained control (torch default initialisation)"}
  if arch["name"] == "unet":
    return inference.NumpyModel({k: v.detach().numpy() for k, v in net.state_dict().items()}, card)
  return network.Model(net, card)


class ControlModel:
  """A control in place of the trained model: its card (grids, Patterson
  settings, domain) with another atom map.  source: 'untrained' (an untrained
  network of the same architecture) or 'patterson' (the central output window
  of the normalised Patterson, the origin peak within origin_radius A
  removed)."""

  def __init__(self, trained, source, origin_radius=1.5):
    import copy
    from cctbx_p2a import model_files
    self.source, self.origin_radius = source, origin_radius
    if source == "untrained":
      self.network = untrained_model(trained)
      card = self.network.card
    else:
      card = copy.deepcopy(trained.card)
      card["name"] = "patterson_as_atom_map"
      card.pop("metrics", None)
    self.info = model_files.ModelInfo(card)
    self.card = card

  def __getattr__(self, name):
    return getattr(self.info, name)

  def predict(self, grid):
    from cctbx_p2a import patterson
    if self.source == "untrained":
      return patterson.on_atom_map_scale(self.network.predict(grid))
    edge = self.card["grid"]["output_n"] * self.info.voxel
    return patterson.window_as_atom_map(grid, self.info.voxel, edge, self.origin_radius)


def control_model(method, trained):
  """The model a control method runs in place of the trained network, cached
  by its source: network_untrained and p2a_untrained share one."""
  source = "patterson" if method == "p2a_patterson" else "untrained"
  key = (source, trained.name)
  if key not in _CONTROLS:
    _CONTROLS[key] = ControlModel(trained, source)
  return _CONTROLS[key]


def check_methods(methods):
  """Refuse unknown method names before any case runs (a worker would only
  record them as crashes)."""
  from cctbx_p2a import baselines
  known = SOLVE_METHODS + READ_OUT_METHODS + ("random_recycling",) + tuple(baselines.METHODS)
  unknown = [m for m in methods if m not in known]
  if unknown:
    raise Sorry("Unknown method(s) %s: choose from %s (separate them with spaces, e.g. "
                "methods='p2a p2a_untrained charge_flipping')." % (", ".join(unknown), ", ".join(known)))


def run_method(method, f_obs, reference, n_sites, seed, tolerance, model=None, sites_centred=None,
               solve_params=None, baselines_params=None, polish=True):
  """Run one method on prepared amplitudes and score it against `reference`.
  With `polish`, a baseline's peaks get the same refinement and dual-space
  recycling that p2a.solve applies to the network's peaks.  solve_params:
  p2a's PHIL (phasing.default_params() when None), for p2a, its controls and
  the polishing alike; the harness sets solve.composition, seed and force."""
  from cctbx_p2a import baselines, evaluation, finishing, phasing
  t0 = time.time()
  row = {"method": method}
  if method in READ_OUT_METHODS:
    if method == "network_untrained":
      model = control_model(method, model)
    y = model.predict(phasing.network_input(f_obs, model)[0])
    row["time_s"] = time.time() - t0
    score = evaluation.score_read_out(sites_centred, y, model.output_voxel)
    d = score["distances"]
    row.update(solved=score["all_found"], distances=d.tolist(), peak_precision=score["peak_precision"],
               mean_error_A=float(d[np.isfinite(d)].mean()) if np.isfinite(d).any() else None,
               n_matched=int(np.sum(d <= tolerance)) // 2, r1=None)
    return row
  if method in SOLVE_METHODS:
    import copy
    params = copy.deepcopy(solve_params or phasing.default_params())
    # p2a is told the composition, as the baselines are told the atom count;
    # p2a_estimated_count is not, and finds the count itself; the controls
    # are told it like p2a and differ from it only in the atom map
    params.solve.composition = None if method == "p2a_estimated_count" else composition_of(reference)
    if method in ("p2a_untrained", "p2a_patterson"):
      model = control_model(method, model)
    if method == "p2a_patterson":  # its atom map is the Patterson: the fallback would repeat its starts
      params.solve.patterson_starts = 0
    params.solve.force = True  # the harness measures; out-of-domain is reported by the sweep itself
    params.solve.seed = seed
    result = phasing.solve(f_obs, params=params, model=model)
    xs, r1 = result.xray_structure, result.r1
    row["n_sites"] = result.n_sites
    row["claimed_solved"] = bool(result.solved)  # what p2a.solve would tell the user
    # where the kept start came from, and the search's own account (trials run)
    row.update(start=result.start, start_detail=result.start_detail, notes=list(result.notes))
  elif method == "random_recycling":
    element = main_element(reference)
    xs = finishing.random_start_recycling(f_obs, n_sites, element=element, seed=seed)
    r1 = finishing.r1_and_cc(f_obs, xs)[0]
  else:
    if method not in baselines.METHODS:
      raise Sorry("Unknown method %r: choose from %s, network, random_recycling, %s."
                  % (method, ", ".join(SOLVE_METHODS), ", ".join(baselines.METHODS)))
    element = main_element(reference)
    result = baselines.METHODS[method](f_obs, n_sites=n_sites, scattering_type=element, seed=seed,
                                       params=baselines_params)
    xs = result.xray_structure
    row["claimed_solved"] = bool(result.solved_by_own_criterion)
    if polish and xs.scatterers().size():
      xs = polish_solution(xs, f_obs, n_sites, composition_counts(reference), solve_params)
    r1 = finishing.r1_and_cc(f_obs, xs)[0] if xs.scatterers().size() else None
  row["time_s"] = time.time() - t0
  score = baselines.score_against_reference(reference, xs, tolerance=tolerance)
  row.update(solved=bool(score["solved"]), n_matched=score["n_matched"], n_reference=score["n_reference"],
             mean_error_A=score["mean_error_A"], r1=r1, heavy_reference=score["heavy_reference"],
             heavy_right=score["heavy_right"])
  return row


def polish_solution(xs, f_obs, n_sites, composition, solve_params=None):
  """p2a's own finishing (refinement, completion, recycling when R1 is poor,
  elements from the composition, difference maps) applied to another
  method's sites in the data's space group, so every method ends alike."""
  from cctbx_p2a import finishing, phasing
  return finishing.finish(xs, f_obs, solve_params or phasing.default_params(), n_sites,
                          composition=composition).xray_structure


def _synthetic_task(task):
  """Worker: make case k of the suite at one sweep point and run one method."""
  from cctbx_p2a import reflections, synthetic, train
  method, suite, overrides, seed, k, tolerance = task
  params = synthetic_params(suite, overrides)
  case_seed = train.example_seed(seed, COMPARE_STREAM, k)
  case = synthetic.make_case(case_seed, params)
  f_obs = reflections.prepare(case.f_obs, source="synthetic").f_obs
  reference = case.reference_structure  # non-H atoms: hydrogens scatter but are not scored
  t0 = time.time()
  try:
    row = run_method(method, f_obs, reference, reference.scatterers().size(),
                     case_seed, tolerance, model=_MODEL, sites_centred=case.sites_centred,
                     baselines_params=_BASELINES, solve_params=_SOLVE)
  except Exception as e:  # noqa: BLE001 -- a crash on one case is a failure of that method, kept in the JSON
    row = {"method": method, "solved": False, "n_matched": 0, "n_reference": reference.scatterers().size(),
           "mean_error_A": None, "r1": None, "time_s": time.time() - t0,
           "error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
  row.update(case=k, point=overrides, n_atoms=reference.scatterers().size(),
             d_min=case.d_min)
  return row


# --- summaries --------------------------------------------------------------------

def summarise(rows):
  """The numbers per method (and sweep point) that the table and JSON show."""
  if not rows:
    return {}
  errors = [r["mean_error_A"] for r in rows if r.get("mean_error_A") is not None]
  out = {
    "cases": len(rows),
    "success_rate": float(np.mean([r["solved"] for r in rows])),
    "mean_error_A": float(np.mean(errors)) if errors else None,
    "median_time_s": float(np.median([r["time_s"] for r in rows])),
    "crashed": sum(1 for r in rows if r.get("error")),  # counted as not solved
  }
  if rows[0]["method"] in READ_OUT_METHODS:
    d = np.concatenate([np.array(r["distances"]) for r in rows if "distances" in r] or [np.zeros(0)])
    out["mean_error_A"] = float(d[np.isfinite(d)].mean()) if np.isfinite(d).any() else None
    out["atoms_within_0.5A"] = float(np.mean(d <= 0.5))
    out["atoms_within_1.0A"] = float(np.mean(d <= 1.0))
    out["peak_precision"] = float(np.mean([r.get("peak_precision", 0.0) for r in rows]))
  else:
    matched = [r["n_matched"] / max(r.get("n_reference") or r.get("n_atoms") or 1, 1) for r in rows]
    out["atoms_within_0.5A"] = float(np.mean(matched))
    r1s = [r["r1"] for r in rows if r.get("r1") is not None]
    out["mean_r1"] = float(np.mean(r1s)) if r1s else None
    solved_heavy = [r for r in rows if r["solved"] and r.get("heavy_reference")]
    if solved_heavy:   # of the solved cases' P/S/Cl/Br/I/metal atoms, the share on their site, rightly typed
      out["heavy_atoms_right_when_solved"] = float(sum(r["heavy_right"] for r in solved_heavy) /
                                                   sum(r["heavy_reference"] for r in solved_heavy))
      out["solved_with_heavy_atoms"] = len(solved_heavy)
    if any("n_sites" in r for r in rows):  # p2a: how often the final atom count is the true one
      out["atom_count_right"] = float(np.mean([r.get("n_sites") == r["n_atoms"] for r in rows])) \
        if all("n_atoms" in r for r in rows) else None
  return out


def format_table(summaries, parameter=None):
  """Terminal table: one line per (sweep point, method)."""
  head = "%-16s %s%6s %8s %10s %10s %9s %10s" % (
    "method", ("%-10s " % parameter) if parameter else "", "cases", "solved", "mean err A",
    "atoms<0.5A", "mean R1", "median s")
  lines = [head, "-" * len(head)]
  for key, s in summaries:
    method, value = key
    lines.append("%-16s %s%6d %7.1f%% %10s %10.3f %9s %10.3f" % (
      method, ("%-10s " % value) if parameter else "", s["cases"], 100 * s["success_rate"],
      "%.3f" % s["mean_error_A"] if s.get("mean_error_A") is not None else "-",
      s["atoms_within_0.5A"], "%.3f" % s["mean_r1"] if s.get("mean_r1") is not None else "-",
      s["median_time_s"]))
  return "\n".join(lines)


def _row_key(method, overrides, k):
  return json.dumps([method, overrides, k], sort_keys=True)


def _as_json(value):
  return json.loads(json.dumps(value, default=str))


def _fingerprint_of(line):
  """The fingerprint on a rows file's first line (None when unreadable)."""
  try:
    return json.loads(line)["fingerprint"]
  except (ValueError, KeyError, TypeError):
    return None


def read_finished_rows(rows_file, fingerprint, overwrite=False):
  """{row key: row} of a rows file written by an earlier run with the same
  fingerprint (its first line); a new file (with that line) when there is
  none.  Another run's file is refused, never mixed in; with overwrite
  (output.overwrite=True) it is replaced."""
  lines = []
  if os.path.exists(rows_file):
    with open(rows_file) as f:
      lines = f.read().splitlines()
    if _fingerprint_of(lines[0] if lines else "") != _as_json(fingerprint):
      if not overwrite:
        raise Sorry("%s holds the rows of a run with other settings (suite, seed, tolerance, model, "
                    "p2a's parameters or source code), so they cannot be reused: remove it, or choose "
                    "another output.prefix=." % rows_file)
      lines = []
  if not lines:
    with open(rows_file, "w") as f:
      f.write(json.dumps({"fingerprint": fingerprint}, sort_keys=True, default=str) + "\n")
    return {}
  rows = {}
  for line in lines[1:]:
    try:
      row = json.loads(line)
    except ValueError:   # a line cut short by a kill: that task runs again
      continue
    rows[_row_key(row["method"], row["point"], row["case"])] = row
  return rows


def run_synthetic(methods, suite="paper", cases=20, seed=7, sweep=None, tolerance=0.5, nproc=0,
                  model_name="default", log=sys.stdout, progress=True, baselines_params=None,
                  fix=None, solve_params=None, rows_file=None, fingerprint=None, overwrite=False):
  """Run every method on the same seeded cases (at each sweep point).
  solve_params: p2a's PHIL (see run_method).  rows_file: each row is
  appended there as it finishes, and the rows a run with the same
  fingerprint left there are reused, so that a long suite survives a kill
  and can be run in pieces (or grown with more cases); overwrite replaces
  a rows file of other settings instead of refusing it."""
  import multiprocessing
  import click
  check_methods(methods)
  parameter, values = parse_sweep(sweep)
  fixed = parse_fixed(fix)
  if parameter in fixed:
    raise Sorry("%s is both swept and fixed: drop it from fix=." % parameter)
  finished = read_finished_rows(rows_file, fingerprint, overwrite) if rows_file else {}
  tasks, rows = [], []
  for value in values:
    overrides = dict(fixed, **({parameter: value} if parameter else {}))
    for k in range(cases):
      for m in methods:
        done = finished.get(_row_key(m, overrides, k))
        if done is not None:
          rows.append(done)
        else:
          tasks.append((m, suite, overrides, seed, k, tolerance))
  if rows:
    print("Reusing %d finished rows of %s; %d to run" % (len(rows), rows_file, len(tasks)), file=log)
  needs_model = any(m in SOLVE_METHODS + READ_OUT_METHODS for m in methods)
  nproc = nproc or os.cpu_count() or 1
  t0 = time.time()
  ctx = multiprocessing.get_context("fork")
  rows_out = open(rows_file, "a") if rows_file else None
  try:
    with ctx.Pool(nproc, initializer=_worker_init,
                  initargs=(model_name if needs_model else None, baselines_params,
                            solve_params)) as pool:
      iterator = pool.imap_unordered(_synthetic_task, tasks)
      shown = click.progressbar(iterator, length=len(tasks), label="cases x methods", file=log,
                                show_eta=True, show_pos=True) if progress and tasks \
        else contextlib.nullcontext(iterator)
      with shown as finishing:
        for row in finishing:
          rows.append(row)
          if rows_out:
            rows_out.write(json.dumps(row, sort_keys=True, default=str) + "\n")
            rows_out.flush()
  finally:
    if rows_out:
      rows_out.close()
  summaries = []
  for value in values:
    for m in methods:
      sel = [r for r in rows if r["method"] == m and (parameter is None or r["point"][parameter] == value)]
      summaries.append(((m, value), summarise(sel)))
  return {"suite": suite, "fixed": fixed, "cases": cases, "seed": seed, "parameter": parameter, "values": values,
          "methods": list(methods), "tolerance": tolerance, "nproc": nproc,
          "wall_time_s": time.time() - t0, "summaries": summaries, "rows": rows}


def run_on_file(observed, reference, methods, seed=7, tolerance=0.5, model_name="default",
                solve_params=None, baselines_params=None, min_fraction=0.9):
  """Every method on one user data set, in its own space group, scored
  against a known structure (its non-H atoms, one per disordered site):
  solved = at least min_fraction of them within tolerance A."""
  from cctbx_p2a import measured, model_files
  model = model_files.load(model_name) if any(m in SOLVE_METHODS for m in methods) else None
  f_obs = observed.f_obs
  reference = measured.reference_sites(reference)
  rows, summaries = [], []
  for m in methods:
    if m in READ_OUT_METHODS:
      continue  # needs the true centred sites; only in synthetic suites
    row = run_method(m, f_obs, reference, reference.scatterers().size(), seed, tolerance,
                     model=model, solve_params=solve_params, baselines_params=baselines_params)
    row["fraction_matched"] = row["n_matched"] / max(row["n_reference"], 1)
    row["solved"] = row["fraction_matched"] >= min_fraction
    rows.append(row)
    summaries.append(((m, None), summarise([row])))
  return {"suite": "file", "methods": list(methods), "tolerance": tolerance, "parameter": None,
          "min_fraction": min_fraction, "summaries": summaries, "rows": rows}


def run_on_measured(folder, methods, cuts, seed=7, tolerance=0.5, min_fraction=0.9,
                    model_name="default", log=sys.stdout, solve_params=None):
  """Every method on every measured set (and cctbx's thpp) at every cut;
  summaries per (method, cut) as for a sweep over 'cut'."""
  from cctbx_p2a import measured
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(folder)
  rows = measured.run(sets, cuts=cuts, methods=methods, seed=seed, tolerance=tolerance,
                      min_fraction=min_fraction, model_name=model_name, log=log,
                      solve_params=solve_params)
  summaries = []
  for cut in cuts:
    for m in methods:
      sel = [r for r in rows if r["method"] == m and r["cut"] == cut]
      if sel:
        summaries.append(((m, cut), summarise(sel)))
  return {"suite": "measured", "measured": folder, "sets": [s.name for s in sets],
          "methods": list(methods), "tolerance": tolerance, "min_fraction": min_fraction,
          "parameter": "cut", "values": list(cuts), "summaries": summaries, "rows": rows,
          "table": measured.format_table(rows, methods)}


def as_json(report):
  """{method: summary, ...} plus per-point entries when swept, and the settings."""
  out = {"settings": {k: report[k] for k in ("suite", "methods", "tolerance", "parameter") if k in report}}
  for k in ("fixed", "cases", "seed", "values", "nproc", "wall_time_s", "min_fraction", "measured",
            "sets"):
    if k in report:
      out["settings"][k] = report[k]
  for (m, value), s in report["summaries"]:
    if report.get("parameter"):
      entry = out.setdefault(m, {"points": []})
      entry["points"].append(dict(s, **{report["parameter"]: value}))
    else:
      out[m] = s
  if report.get("parameter"):  # overall numbers per method across the sweep
    for m in report["methods"]:
      out[m].update(summarise([r for r in report["rows"] if r["method"] == m]))
  # every case of every method, so tables by atom count etc. need no rerun
  # (the network's per-atom distances are left out: they are long)
  out["rows"] = [{k: v for k, v in r.items() if k != "distances"} for r in report.get("rows", [])]
  return out

"""Measured data sets with their published models: the judge on real crystals.

A set is a folder holding the reflections and the refined model of one
published structure, as in ``shared/data/measured/<name>/``:

    data_merged.mtz  (or data.hkl with a SHELX .ins/.res, or meta.json's
                      "sg" and "cell" for its symmetry)
    ref.cif / ref.res  the published model

cctbx ships one more, thpp (P2_1/n, 0.70 A, unmerged, disordered):
``smtbx/regression/test_data/thpp.{hkl,ins,cif}``; ``thpp_set()`` finds it.

Every method runs on the same data, in the data's space group, with the same
finishing (compare.run_method), at the native resolution and cut to lower
ones.  A structure counts as solved when at least ``min_fraction`` of the
published non-H sites (one per disordered site) have an atom within
``tolerance`` A after the space group's origin shifts and the hand (emma).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from libtbx.utils import Sorry

DATA_NAMES = ("data_merged.mtz", "data.mtz", "data.hkl")
REFERENCE_NAMES = ("ref.cif", "ref.res", "ref.pdb")


@dataclass
class MeasuredSet:
  """One published data set: where its reflections and its model are."""
  name: str
  data: str
  reference: str
  meta: dict


def thpp_set():
  """cctbx's own thpp data set (smtbx regression data), or None."""
  import smtbx
  d = os.path.join(os.path.dirname(smtbx.__file__), "regression", "test_data")
  paths = [os.path.join(d, "thpp." + ext) for ext in ("hkl", "ins", "cif")]
  if not all(os.path.isfile(p) for p in paths):
    return None
  return MeasuredSet(name="thpp_p21n", data=paths[0], reference=paths[2], meta={})


def find_sets(folder):
  """The data sets in `folder` (each sub-folder with data and a model), by name."""
  if not os.path.isdir(folder):
    raise Sorry("No folder %s: give the folder that holds one sub-folder per measured data set "
                "(reflections + published model)." % folder)
  sets = []
  for name in sorted(os.listdir(folder)):
    d = os.path.join(folder, name)
    data = next((os.path.join(d, n) for n in DATA_NAMES if os.path.isfile(os.path.join(d, n))), None)
    ref = next((os.path.join(d, n) for n in REFERENCE_NAMES if os.path.isfile(os.path.join(d, n))), None)
    if data and ref:
      meta_path = os.path.join(d, "meta.json")
      meta = json.load(open(meta_path)) if os.path.isfile(meta_path) else {}
      sets.append(MeasuredSet(name=name, data=data, reference=ref, meta=meta))
  if not sets:
    raise Sorry("%s holds no data sets: each sub-folder needs reflections (%s) and a model (%s)."
                % (folder, ", ".join(DATA_NAMES), ", ".join(REFERENCE_NAMES)))
  return sets


def reference_sites(xray_structure, min_separation=0.9):
  """The published model's non-H atoms with one atom per site: of
  partially occupied atoms closer than min_separation A to one already kept
  (N3/C3 sharing a site), the later ones are dropped; alternative positions
  further apart (C7A/C7B) both stay, so a solution needs one of them."""
  from cctbx.array_family import flex
  from cctbx_p2a import finishing
  xs = xray_structure.select(~flex.bool([sc.scattering_type in ("H", "D")
                                         for sc in xray_structure.scatterers()]))
  keep = []
  for i, sc in enumerate(xs.scatterers()):
    if sc.occupancy < 0.999 and keep:
      kept = xs.select(flex.size_t(keep))
      if finishing.distances_to_structure(kept, [sc.site], min_separation)[0] < min_separation:
        continue
    keep.append(i)
  return xs.select(flex.size_t(keep))


def load(measured_set, reflections_params=None):
  """(ObservedData, published non-H sites) of a set, in the data's symmetry."""
  from cctbx_p2a import files, reflections
  params = reflections_params or reflections.default_params()
  if measured_set.data.endswith(".hkl") and measured_set.meta.get("sg"):
    from cctbx import crystal
    base = os.path.splitext(measured_set.data)[0]
    if not any(os.path.isfile(base + e) for e in (".ins", ".res")):
      cs = crystal.symmetry(unit_cell=measured_set.meta["cell"],
                            space_group_symbol=measured_set.meta["sg"])
      params.unit_cell, params.space_group = cs.unit_cell(), cs.space_group_info()
  observed = reflections.read(measured_set.data, params)
  reference = reference_sites(files.read_structure(measured_set.reference))
  return observed, reference


def refined_published(observed, reference, cut, params):
  """The published sites refined by p2a's own refinement against the data at
  `cut` ("native" or d_min in A), each typed as published: what a right
  solution looks like there.  Returns (f_obs at the cut, the structure).
  Why: the verdict's rules (U_iso outliers, chemistry) are measured on these
  (benchmarks/u_iso_of_right_structures.py, chemistry_of_right_structures.py)."""
  from cctbx_p2a import finishing
  f_obs = observed.f_obs if cut == "native" else observed.f_obs.resolution_filter(d_min=float(cut))
  xs = finishing.structure_of_sites(f_obs.crystal_symmetry(), reference.sites_frac(), u_iso=0.03)
  for sc, published in zip(xs.scatterers(), reference.scatterers()):
    sc.scattering_type = published.scattering_type
  finishing.refine_with_params(xs, f_obs, params)
  return f_obs, xs


def run(sets, cuts=("native", 1.2, 1.5, 2.0), methods=("p2a", "charge_flipping", "tangent_formula"),
        seed=7, tolerance=0.5, min_fraction=0.9, model_name="default", log=sys.stdout,
        solve_params=None):
  """Every method on every set at every cut.  Returns rows (dicts).
  solve_params: p2a's PHIL (phasing.default_params() when None)."""
  from cctbx_p2a import compare, model_files
  model = model_files.load(model_name)
  rows = []
  for s in sets:
    observed, reference = load(s)
    for cut in cuts:
      f_obs = observed.f_obs
      if cut != "native":
        if float(cut) <= f_obs.d_min() + 0.01:
          continue
        f_obs = f_obs.resolution_filter(d_min=float(cut))
      for method in methods:
        t0 = time.time()
        try:
          row = compare.run_method(method, f_obs, reference, reference.scatterers().size(), seed,
                                   tolerance, model=model, solve_params=solve_params)
        except Sorry as e:
          row = {"method": method, "solved": False, "n_matched": 0,
                 "n_reference": reference.scatterers().size(), "r1": None, "error": str(e)}
        row.update(set=s.name, cut=cut, d_min=round(f_obs.d_min(), 3),
                   space_group=str(f_obs.space_group_info()), n_reflections=f_obs.size(),
                   time_s=round(time.time() - t0, 2))
        row["fraction_matched"] = row["n_matched"] / max(row["n_reference"], 1)
        row["solved"] = row["fraction_matched"] >= min_fraction
        print("%-20s %-7s %-16s %5.2f A  %3d/%-3d matched  %s  %.1f s" % (
          s.name, cut, method, row["d_min"], row["n_matched"], row["n_reference"],
          "SOLVED" if row["solved"] else "-", row["time_s"]), file=log)
        log.flush()
        rows.append(row)
  return rows


def format_table(rows, methods):
  """Solved counts per cut and method, then one line per set ('WRONG but
  claimed solved' where a method's own verdict said solved and the
  published model says otherwise)."""
  cuts = []
  for r in rows:
    if r["cut"] not in cuts:
      cuts.append(r["cut"])
  lines = ["| cut | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
  for cut in cuts:
    cells = []
    for m in methods:
      sel = [r for r in rows if r["cut"] == cut and r["method"] == m]
      wrong = sum(bool(r.get("claimed_solved")) and not r["solved"] for r in sel)
      cells.append("%d of %d%s" % (sum(r["solved"] for r in sel), len(sel),
                                   " (%d wrong claimed solved)" % wrong if wrong else ""))
    lines.append("| %s | %s |" % (cut, " | ".join(cells)))
  lines += ["", "| set | cut | d_min | " + " | ".join(methods) + " |",
            "|---|---|---|" + "---|" * len(methods)]
  keys = []
  for r in rows:
    if (r["set"], r["cut"]) not in keys:
      keys.append((r["set"], r["cut"]))
  for name, cut in keys:
    sel = {r["method"]: r for r in rows if r["set"] == name and r["cut"] == cut}
    d_min = next(iter(sel.values()))["d_min"]
    cells = []
    for m in methods:
      r = sel.get(m)
      if r is None:
        cells.append("")
        continue
      if r.get("error"):
        cells.append("refused (%s)" % r["error"].split(":")[-1].split("(")[0].strip()[:40])
        continue
      r1 = " R1 %.2f" % r["r1"] if r.get("r1") is not None else ""
      verdict = "**solved**" if r["solved"] else "no"
      if r.get("claimed_solved") and not r["solved"]:
        verdict = "WRONG but claimed solved"
      cells.append("%s %d/%d%s, %.0f s" % (verdict, r["n_matched"], r["n_reference"], r1, r["time_s"]))
    lines.append("| %s | %s | %.2f | %s |" % (name, cut, d_min, " | ".join(cells)))
  return "\n".join(lines)

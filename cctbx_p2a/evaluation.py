"""Scoring the network's raw read-out the way the paper does.

For each case the true atoms and their inverses (about the centroid) are
matched one-to-one to the peaks of the predicted map; the paper's metric is the
mean distance over matched atoms.  This is the network alone -- no hand choice
and no refinement -- so it measures what training achieved.
"""
from __future__ import annotations

import sys
import time

import numpy as np


def match_to_peaks(true_sites, peaks, max_distance=1.5):
  """Distance from each true site to its nearest peak (inf beyond max_distance).

  Not one-to-one: when an atom and another atom's inverse (or an atom near the
  centroid and its own inverse) lie closer than about 1 A, the target itself
  holds one peak for both, so one peak may stand for two sites."""
  true_sites = np.asarray(true_sites, dtype=float)
  if len(peaks) == 0:
    return np.full(len(true_sites), np.inf)
  d = np.linalg.norm(true_sites[:, None, :] - np.asarray(peaks)[None, :, :], axis=2).min(axis=1)
  return np.where(d <= max_distance, d, np.inf)


def score_read_out(sites_centred, atom_map, voxel, threshold=0.1, inverses=True):
  """Per-case scores of one predicted map against the truth (the sites and,
  as the paper's target holds them, their inverses).  peak_precision is the
  fraction of peaks within 1 A of a true site, so that drawing every
  Patterson vector is not rewarded."""
  from cctbx_p2a import sites as sites_stage
  peaks, _ = sites_stage.find_peaks(atom_map, voxel, threshold=threshold)
  sites_centred = np.asarray(sites_centred, dtype=float)
  truth = np.concatenate([sites_centred, -sites_centred]) if inverses else sites_centred
  d = match_to_peaks(truth, peaks)
  precision = float(np.mean(np.linalg.norm(peaks[:, None, :] - truth[None], axis=2).min(axis=1) <= 1.0)) \
    if len(peaks) else 0.0
  return {"distances": d, "n_peaks": len(peaks), "n_true": len(truth),
          "all_found": bool(np.all(d <= 1.0)), "peak_precision": precision}


def summarise(case_scores, times):
  d = np.concatenate([c["distances"] for c in case_scores]) if case_scores else np.array([])
  found = d[np.isfinite(d)]
  return {
    "cases": len(case_scores),
    "success_rate": float(np.mean([c["all_found"] for c in case_scores])) if case_scores else 0.0,
    "mean_error_A": float(found.mean()) if found.size else None,
    "atoms_within_0.5A": float(np.mean(d <= 0.5)) if d.size else 0.0,
    "atoms_within_1.0A": float(np.mean(d <= 1.0)) if d.size else 0.0,
    "peak_precision": float(np.mean([c.get("peak_precision", 0.0) for c in case_scores]))
    if case_scores else 0.0,
    "median_time_s": float(np.median(times)) if times else None,
  }


def atom_count_calibration(masses, counts):
  """Atom-map mass per atom (median over cases: a few maps of cells where
  neighbours' vectors crowd the window carry far more mass, and a ratio of
  sums follows them) and how well mass / that value recovers the count: the
  fraction of cases estimated exactly and the RMS relative error.
  phasing.atom_count uses it."""
  masses, counts = np.asarray(masses, float), np.asarray(counts, float)
  if not len(counts):
    return {}
  per_atom = float(np.median(masses / counts))
  if not per_atom > 0:   # an empty map (an untrained or failed network): no calibration to give
    return {"atom_map_mass_per_atom": per_atom, "atom_count_exact": 0.0, "atom_count_rms_relative_error": None}
  estimate = np.maximum(np.rint(masses / per_atom), 1)
  return {"atom_map_mass_per_atom": per_atom,
          "atom_count_exact": float(np.mean(estimate == counts)),
          "atom_count_rms_relative_error": float(np.sqrt(np.mean((estimate / counts - 1) ** 2)))}


def evaluate_network(model, params, n_cases, log=sys.stdout, stream=None, seed=None):
  """The paper's evaluation on fresh seeded cases (a stream not used in training)."""
  from cctbx_p2a import patterson, sites, synthetic, train
  stream = train.EVALUATION_STREAM if stream is None else stream
  seed = params.train.seed if seed is None else seed
  scores, times, masses, counts = [], [], [], []
  for k in range(n_cases):
    case = synthetic.make_case(train.example_seed(seed, stream, k), params.synthetic,
                               d_min_floor=params.patterson.input_d_min)
    t0 = time.time()
    x = patterson.model_input_from_params(synthetic.as_amplitudes(case.f_obs), params.patterson)
    y = model.predict(x)
    times.append(time.time() - t0)
    scores.append(score_read_out(case.sites_centred, y, model.output_voxel))
    masses.append(sites.atom_map_mass(y))
    counts.append(len(case.sites_centred))
  result = summarise(scores, times)
  result.update(atom_count_calibration(masses, counts))
  print("Evaluation on %d fresh cases: mean error %s A, atoms within 0.5 A %.3f, within 1.0 A %.3f, "
        "all atoms found %.3f, peaks within 1 A of an atom %.3f, %.3f s per case" % (
          result["cases"], "%.3f" % result["mean_error_A"] if result["mean_error_A"] is not None else "n/a",
          result["atoms_within_0.5A"], result["atoms_within_1.0A"], result["success_rate"],
          result["peak_precision"], result["median_time_s"] or 0), file=log)
  if result.get("atom_count_rms_relative_error") is not None:
    print("Atom count from the map's mass: %.2f per atom; exact in %.0f %% of cases, RMS relative "
          "error %.2f" % (result["atom_map_mass_per_atom"], 100 * result["atom_count_exact"],
                          result["atom_count_rms_relative_error"]), file=log)
  else:
    print("Atom count from the map's mass: none (the maps are empty)", file=log)
  return result

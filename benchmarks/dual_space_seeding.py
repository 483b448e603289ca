"""How often a dual-space trial comes close, by how its first sites are drawn
(baselines.dual_space.seeding: random or patterson), on the measured sets.

    python benchmarks/dual_space_seeding.py [--sets ylid,sucrose] [--cuts 1.2,1.5]
        [--trials 300] [--seed 7] [--seedings random,patterson] [name=value ...]

Why: below atomic resolution the crystal route lives on dual-space trials,
and a solve succeeds when one trial has most atoms right and the finishing
completes it.  The fraction of such trials, not the solve's yes/no, says
whether a way of starting trials is better, with far fewer runs.  Each trial
is exactly what p2a.solve runs (dual_space.run_trial: recycling, brief
refinement); it is scored against the published non-H sites (emma, 0.5 A,
origin shifts and hand).  The counts in brackets are of the trials p2a.solve
finishes (the best finish_per_round = 5 by CC of each round of 50), which
says how well the CC ranks them (e.g. refine_u_iso=False against the
default).  name=value: PHIL of the baselines.dual_space scope.
"""
import argparse
import os
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, compare, dual_space, measured, phil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trial_fractions(f_obs, reference, params, n_trials, seed):
  """The fraction of reference atoms each trial places within 0.5 A, the
  trials' CCs, and the seconds per trial (set-up included)."""
  t0 = time.time()
  e_map, seeds = dual_space.trial_setup(f_obs, params)
  n = reference.scatterers().size()
  element = compare.main_element(reference)
  fractions, ccs = [], []
  for index in range(n_trials):
    trial = dual_space.run_trial(f_obs, e_map, n, params, element, seed, index, seeds=seeds)
    score = baselines.score_against_reference(reference, trial.xray_structure, tolerance=0.5)
    fractions.append(score["n_matched"] / float(n))
    ccs.append(trial.cc)
  return np.array(fractions), np.array(ccs), (time.time() - t0) / max(n_trials, 1)


def in_round_best(ccs, per_round, n_best):
  """Which trials are among the n_best by CC of their round of per_round
  (the ones p2a.solve hands to the finishing)."""
  chosen = np.zeros(len(ccs), bool)
  for start in range(0, len(ccs), per_round):
    chosen[start + np.argsort(-ccs[start:start + per_round], kind="stable")[:n_best]] = True
  return chosen


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--sets", default=None, help="comma-separated parts of set names (default: all)")
  ap.add_argument("--cuts", default="1.2,1.5")
  ap.add_argument("--trials", type=int, default=300)
  ap.add_argument("--seed", type=int, default=7)
  ap.add_argument("--seedings", default="random,patterson")
  ap.add_argument("phil", nargs="*", help="baselines.dual_space PHIL overrides name=value")
  args = ap.parse_args()
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(args.folder)
  if args.sets:
    sets = [s for s in sets if any(part in s.name for part in args.sets.split(","))]
  print("| set | cut | seeding | trials | >= 40 % right (among the finished) | "
        ">= 50 % right (among the finished) | >= 70 % right | best | best trial's rank by CC | "
        "s per trial |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for s in sets:
    observed, reference = measured.load(s)
    for cut in args.cuts.split(","):
      f_obs = observed.f_obs if cut == "native" else observed.f_obs.resolution_filter(d_min=float(cut))
      for seeding in args.seedings.split(","):
        overrides = {"baselines.dual_space." + k: v for k, v in (a.split("=", 1) for a in args.phil)}
        overrides["baselines.dual_space.seeding"] = seeding
        params = phil.extract("baselines", **overrides).baselines.dual_space
        fractions, ccs, per_trial = trial_fractions(f_obs, reference, params, args.trials, args.seed)
        best = int(np.argmax(fractions))
        rank = int((ccs > ccs[best]).sum()) + 1
        finished = in_round_best(ccs, params.trials_per_round, params.finish_per_round)
        print("| %s | %s | %s | %d | %d (%d) | %d (%d) | %d | %.2f | %d | %.2f |" % (
          s.name, cut, seeding, len(fractions), (fractions >= 0.4).sum(),
          (finished & (fractions >= 0.4)).sum(), (fractions >= 0.5).sum(),
          (finished & (fractions >= 0.5)).sum(), (fractions >= 0.7).sum(), fractions.max(), rank,
          per_trial), flush=True)


if __name__ == "__main__":
  main()

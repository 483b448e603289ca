"""What the finishing makes of dual-space trials that are partly right, with
and without partial-structure expansion (refinement.expand_rounds).

    python benchmarks/half_right_starts.py [--sets thpp] [--cut 1.5] [--trials 300]
        [--top 10] [--seed 7]

Why: below atomic resolution a solve lives on the rare trial with half its
atoms right, and succeeds only when the finishing completes it.  Whole
solves are slow and yes/no; this takes exactly the trials p2a.solve runs
(dual_space.run_trial, by seed and index), scores each against the published
non-H sites (emma, 0.5 A, origin shifts and hand), and finishes the --top
most-right ones twice through finishing.finish with the composition, without
and with the expansion.  Prints a markdown table per set.
"""
import argparse
import copy
import os
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, compare, dual_space, finishing, measured, phasing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matched(reference, xray_structure):
  return baselines.score_against_reference(reference, xray_structure, tolerance=0.5)["n_matched"]


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--sets", default="thpp", help="comma-separated parts of set names")
  ap.add_argument("--cut", type=float, default=1.5)
  ap.add_argument("--trials", type=int, default=300)
  ap.add_argument("--top", type=int, default=10)
  ap.add_argument("--seed", type=int, default=7)
  args = ap.parse_args()
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(args.folder)
  sets = [s for s in sets if any(part in s.name for part in args.sets.split(","))]
  for s in sets:
    observed, reference = measured.load(s)
    f_obs = observed.f_obs.resolution_filter(d_min=args.cut)
    n = reference.scatterers().size()
    composition = compare.composition_counts(reference)
    params = phasing.default_params()
    without = copy.deepcopy(params)
    without.refinement.expand_rounds = 0
    e_map, seeds = dual_space.trial_setup(f_obs, params.baselines.dual_space)
    trials = [dual_space.run_trial(f_obs, e_map, n, params.baselines.dual_space, "C", args.seed, i,
                                   seeds=seeds) for i in range(args.trials)]
    right = np.array([matched(reference, t.xray_structure) for t in trials])
    print("\n%s at %.2f A: %d trials, %d with >= half the %d atoms right\n" % (
      s.name, args.cut, len(trials), (right >= n / 2.0).sum(), n))
    print("| trial | atoms right in the trial | finished without expansion (right, R1) | "
          "with expansion (right, R1) | its steps | s |")
    print("|---|---|---|---|---|---|")
    for i in np.argsort(-right, kind="stable")[:args.top]:
      plain = finishing.finish(trials[i].xray_structure.deep_copy_scatterers(), f_obs, without, n,
                               composition=composition)
      t0 = time.time()
      expanded = finishing.finish(trials[i].xray_structure.deep_copy_scatterers(), f_obs, params, n,
                                  composition=composition)
      steps = [step for step in expanded.steps if "expansion" in step or "rebuilt" in step]
      print("| %d | %d | %d, %.3f | %d, %.3f | %s | %.1f |" % (
        i, right[i], matched(reference, plain.xray_structure), plain.r1,
        matched(reference, expanded.xray_structure), expanded.r1, "; ".join(steps) or "-",
        time.time() - t0), flush=True)


if __name__ == "__main__":
  main()

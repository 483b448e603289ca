"""Measured crystals: p2a, its control and the direct methods on published data.

    python benchmarks/measured_sets.py [--folder FOLDER] [--cuts native,1.2,1.5,2.0]
        [--methods p2a,p2a_untrained,charge_flipping,tangent_formula] [--json out.json]
        [--sets thpp,ylid] [--seed 7] [name=value ...]

name=value: p2a's PHIL, e.g. baselines.dual_space.processes=1 (one process per
solve, to run two benchmark processes side by side on two cores).

FOLDER defaults to ../shared/data/measured beside the repository; cctbx's own
thpp set is always added.  Prints the markdown tables of docs/crystals.md.
"""
import argparse
import json
import os
import sys

import cctbx_p2a  # noqa: F401  (import order)
from cctbx_p2a import measured, phasing, phil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--cuts", default="native,1.2,1.5,2.0")
  ap.add_argument("--methods", default="p2a,p2a_untrained,charge_flipping,tangent_formula")
  ap.add_argument("--json", default=None)
  ap.add_argument("--sets", default=None, help="comma-separated parts of set names (default: all)")
  ap.add_argument("--seed", type=int, default=7, help="solve.seed of every solve (default 7)")
  ap.add_argument("phil", nargs="*", help="p2a PHIL overrides name=value")
  args = ap.parse_args()
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(args.folder)
  if args.sets:
    sets = [s for s in sets if any(part in s.name for part in args.sets.split(","))]
  methods = args.methods.split(",")
  params = phil.apply_overrides(phil.master_phil(*phasing.SOLVE_SCOPES), None,
                                dict(a.split("=", 1) for a in args.phil))
  rows = measured.run(sets, cuts=args.cuts.split(","), methods=methods, seed=args.seed, log=sys.stderr,
                      solve_params=params)
  print(measured.format_table(rows, methods))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
  main()

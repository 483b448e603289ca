"""The finishing's basin: what finishing.finish makes of starts with a known
share of right atoms, on the measured sets cut to a resolution.

    python benchmarks/finishing_basin.py [--sets sucrose,ntd,thpp] [--cut 1.5]
        [--fractions 0.6,0.75] [--repeats 8] [--noise 0.25] [name=value ...]

Why: below atomic resolution a solve needs one trial that is partly right
and a finishing that completes it.  Whole solves are slow, yes/no, and
depend on which trials a seed draws; this asks the finishing alone.  Each
start holds round(fraction * n) of the published non-H atoms (typed as
published, moved by `noise` A rms) and n minus that many atoms at random
places in the cell, all U_iso 0.03; it is finished with the composition
(finishing.finish, as p2a.solve finishes a dual-space trial) and scored
against the published sites (emma, 0.5 A, origin shifts and hand).  Start
r of a fraction is drawn from seed 1000 r + 100 * fraction, the same for
every PHIL.  name=value: p2a's PHIL (e.g. refinement.start_d_min=None).
Prints a markdown table: starts solved (>= 90 % of atoms right) and the mean
share right, per set and fraction.
"""
import argparse
import os
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, finishing, measured, phasing, phil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(reference, crystal_symmetry, fraction, noise, rng):
  """Part of the published sites, moved by `noise` A rms, plus random ones."""
  n = reference.scatterers().size()
  uc = reference.unit_cell()
  kept = rng.choice(n, int(round(fraction * n)), replace=False)
  sites = [uc.fractionalize(tuple(np.array(uc.orthogonalize(reference.scatterers()[int(i)].site))
                                  + rng.normal(0, noise / np.sqrt(3), 3))) for i in kept]
  sites += [tuple(rng.random(3)) for _ in range(n - len(sites))]
  xs = finishing.structure_of_sites(crystal_symmetry, sites, u_iso=0.03)
  for sc, i in zip(xs.scatterers(), kept):
    sc.scattering_type = reference.scatterers()[int(i)].scattering_type
  return xs


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--sets", default="sucrose,ntd,thpp", help="comma-separated parts of set names")
  ap.add_argument("--cut", type=float, default=1.5)
  ap.add_argument("--fractions", default="0.6,0.75")
  ap.add_argument("--repeats", type=int, default=8)
  ap.add_argument("--noise", type=float, default=0.25, help="rms displacement of the right atoms (A)")
  ap.add_argument("phil", nargs="*", help="p2a PHIL overrides name=value")
  args = ap.parse_args()
  params = phil.apply_overrides(phil.master_phil(*phasing.SOLVE_SCOPES), None,
                                dict(a.split("=", 1) for a in args.phil))
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(args.folder)
  sets = [s for s in sets if any(part in s.name for part in args.sets.split(","))]
  fractions = [float(f) for f in args.fractions.split(",")]
  t0 = time.time()
  rows, total = [], [0, 0]
  for s in sets:
    observed, reference = measured.load(s)
    f_obs = observed.f_obs.resolution_filter(d_min=args.cut)
    n = reference.scatterers().size()
    composition = finishing.composition_counts(reference)
    for fraction in fractions:
      shares = []
      for r in range(args.repeats):
        rng = np.random.default_rng(1000 * r + int(round(100 * fraction)))
        xs = start(reference, f_obs.crystal_symmetry(), fraction, args.noise, rng)
        done = finishing.finish(xs, f_obs, params, n, composition=composition)
        shares.append(baselines.score_against_reference(reference, done.xray_structure)["n_matched"] / n)
      solved = sum(x >= 0.9 for x in shares)
      total[0] += solved
      total[1] += len(shares)
      rows.append("| %s | %d | %.2f | %d of %d | %.2f |" % (s.name, n, fraction, solved, len(shares),
                                                          np.mean(shares)))
      print(rows[-1], file=sys.stderr, flush=True)
  print("PHIL: %s; cut %.2f A; noise %.2f A\n" % (" ".join(args.phil) or "defaults", args.cut, args.noise))
  print("| set | atoms | right at the start | solved | mean share right |")
  print("|---|---|---|---|---|")
  print("\n".join(rows))
  print("| **all** | | | **%d of %d** | |" % tuple(total))
  print("\n%.0f s" % (time.time() - t0))


if __name__ == "__main__":
  main()

"""How far the U_iso of right structures spread: the published sites of the
measured sets, refined by p2a's refinement at each cut, with the largest
U_iso against the median.  The evidence for success.u_iso_outlier_ratio.

    python benchmarks/u_iso_of_right_structures.py [--folder FOLDER]
"""
import argparse
import os

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import finishing, measured, phasing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  args = ap.parse_args()
  params = phasing.default_params()
  print("| set | cut | R1 | median U_iso | max U_iso | max / median |")
  print("|---|---|---|---|---|---|")
  for s in [x for x in [measured.thpp_set()] if x] + measured.find_sets(args.folder):
    observed, reference = measured.load(s)
    for cut in ("native", 1.2, 1.5, 2.0):
      f_obs, xs = measured.refined_published(observed, reference, cut, params)
      u = np.array([sc.u_iso for sc in xs.scatterers()])
      print("| %s | %s | %.3f | %.3f | %.3f | %.1f |" % (
        s.name, cut, finishing.r1_and_cc(f_obs, xs)[0], np.median(u), u.max(), u.max() / np.median(u)))


if __name__ == "__main__":
  main()

"""Chemistry of right structures: the published sites of the measured sets,
refined by p2a's refinement at each cut, scored by the verdict's chemistry
rules (the bonded fraction; contacts too long for a bond and too short for
anything else, finishing.impossible_contacts).  The evidence that the rules
never reject a right structure.

    python benchmarks/chemistry_of_right_structures.py [--folder FOLDER]
"""
import argparse
import os

import cctbx_p2a  # noqa: F401  (import order)

from cctbx_p2a import finishing, measured, phasing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  args = ap.parse_args()
  params = phasing.default_params()
  print("| set | cut | R1 | bonded fraction | impossible contacts (A) |")
  print("|---|---|---|---|---|")
  for s in [x for x in [measured.thpp_set()] if x] + measured.find_sets(args.folder):
    observed, reference = measured.load(s)
    for cut in ("published", "native", 1.2, 1.5, 2.0):
      if cut == "published":
        xs, r1 = reference, None
      else:
        f_obs, xs = measured.refined_published(observed, reference, cut, params)
        r1 = finishing.r1_and_cc(f_obs, xs)[0]
      labels = [sc.label for sc in xs.scatterers()]
      bad = finishing.impossible_contacts(xs)
      print("| %s | %s | %s | %.2f | %s |" % (
        s.name, cut, "-" if r1 is None else "%.3f" % r1, finishing.bonded_fraction(xs),
        ", ".join("%s-%s %.2f" % (labels[i], labels[j], d) for i, j, d, _ in bad) or "none"))


if __name__ == "__main__":
  main()

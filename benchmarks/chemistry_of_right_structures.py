"""Chemistry of right structures: the published sites of the measured sets,
refined by p2a's refinement at each cut, scored by the verdict's chemistry
rules (the bonded fraction; contacts too long for a bond and too short for
anything else, finishing.impossible_contacts), by whether the composition's
elements can be placed on them by density (finishing.assign_elements, the
rule success.composition_elements_d_min), and by their highest residual
density (a candidate rule, not used).  The evidence that the rules never
reject a right structure.

    python benchmarks/chemistry_of_right_structures.py [--folder FOLDER]
"""
import argparse
import os

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import finishing, measured, phasing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def highest_residual_peak(xs, f_obs):
  """The highest peak of the F_obs - k|F_calc| map (model phases) over the
  median height of the light atoms (Z <= 18) in the F_obs map, both on the
  same absolute scale: about 0.1-0.2 where only hydrogens are missing."""
  from cctbx import maptbx
  f_calc = f_obs.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
  maps = []
  for coefficients in (f_obs.phase_transfer(f_calc), finishing.model_phased_coefficients(f_obs, f_calc)[0]):
    fft_map = coefficients.fft_map(resolution_factor=0.25, symmetry_flags=maptbx.use_space_group_symmetry)
    fft_map.apply_volume_scaling()
    maps.append(fft_map)
  rho = maps[0].real_map_unpadded()
  light = [maptbx.eight_point_interpolation(rho, sc.site) for sc in xs.scatterers()
           if finishing.atomic_number(sc.scattering_type) <= 18]
  peaks = maps[1].peak_search(maptbx.peak_search_parameters(
    peak_search_level=1, interpolate=True, min_distance_sym_equiv=0.7, max_clusters=5)).all(max_clusters=5)
  return max(peaks.heights()) / np.median(light)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  args = ap.parse_args()
  params = phasing.default_params()
  print("| set | cut | R1 | bonded fraction | impossible contacts (A) | composition typed by density "
        "(R1) | highest residual peak / light atom |")
  print("|---|---|---|---|---|---|---|")
  for s in [x for x in [measured.thpp_set()] if x] + measured.find_sets(args.folder):
    observed, reference = measured.load(s)
    composition = finishing.composition_counts(reference)
    for cut in ("published", "native", 1.2, 1.5, 2.0):
      typed = residual = "-"
      if cut == "published":
        xs, r1 = reference, None
      else:
        f_obs, xs = measured.refined_published(observed, reference, cut, params)
        fit = finishing.r1_and_cc(f_obs, xs)
        r1 = fit[0]
        result, typed_fit, note = finishing.assign_elements(xs, f_obs, composition, params, fit)
        # refused: the note holds the typed model's R1 ("... gave R1 0.121, worse than ...")
        typed = ("accepted (%.3f)" % typed_fit[0] if result is not xs else
                 "refused (%s)" % note.split("gave R1 ")[1].split(",")[0])
        residual = "%.2f" % highest_residual_peak(xs, f_obs)
      labels = [sc.label for sc in xs.scatterers()]
      bad = finishing.impossible_contacts(xs)
      print("| %s | %s | %s | %.2f | %s | %s | %s |" % (
        s.name, cut, "-" if r1 is None else "%.3f" % r1, finishing.bonded_fraction(xs),
        ", ".join("%s-%s %.2f" % (labels[i], labels[j], d) for i, j, d, _ in bad) or "none",
        typed, residual), flush=True)


if __name__ == "__main__":
  main()

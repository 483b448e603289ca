"""Oracle check of route (a): with the true molecule image given, does the rest
of the route (Laue orientations x translation search -> CC -> finishing)
solve the measured sets cut to lower resolution?

    python benchmarks/oracle_placement.py [FOLDER] [--cuts 1.5,2.0]
        [--qualities exact,rot4,rot4_noise0.2,rot10_noise0.3[,harder]] [--seeds 0,1,2]
        [--rigid-body true|false] [--json out.json]

The image is the published non-H asymmetric unit (one site per disordered
site), centred, in its true orientation, then turned by a few degrees about a
random axis and jittered (isotropic Gaussian, 3D RMS), as a network might
deliver it.  Columns:
  top peak right  the best-CC placement is the perturbed image at the true
                  position (>= 90 % of its atoms within 0.5 A of the image
                  placed on the true centroid, origin shifts and hand allowed);
  matches         >= 90 % of the published atoms within 0.5 A after
                  finishing.finish (measured.py's rule);
  p2a solved      phasing.verdict would call it solved (R1, CC, reflections
                  per parameter, bonded chemistry).
FOLDER defaults to ../shared/data/measured; cctbx's thpp is always added.
"""
import argparse
import json
import os
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, compare, measured, placement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITIES = ("exact", "rot4", "rot4_noise0.2", "rot10_noise0.3")
HARDER = ("rot20_noise0.3", "rot30_noise0.3", "rot10_noise0.5", "rot10_noise0.7", "rot10_noise0.3_carbon")


def image_quality(name):
  """'exact', or 'rot<degrees>[_noise<A RMS>][_carbon]' -> (degrees, RMS,
  every atom given as carbon: the image carries no elements)."""
  if name == "exact":
    return 0.0, 0.0, False
  degrees, rms, carbon = 0.0, 0.0, False
  for part in name.split("_"):
    if part.startswith("rot"):
      degrees = float(part[3:])
    elif part.startswith("noise"):
      rms = float(part[5:])
    elif part == "carbon":
      carbon = True
    else:
      raise ValueError("image quality %r: use exact or rot<deg>[_noise<A>][_carbon]" % name)
  return degrees, rms, carbon


def true_centroid_frac(reference):
  orth = placement.orthogonalisation(reference.unit_cell())
  keep = [i for i, sc in enumerate(reference.scatterers()) if sc.scattering_type not in ("H", "D")]
  cart = np.array(reference.sites_frac())[keep] @ orth.T
  return np.linalg.solve(orth, cart.mean(axis=0))


def run_one(observed, reference, cut, quality, seed, params):
  f_obs = observed.f_obs.resolution_filter(d_min=cut)
  rotation, rms, carbon = image_quality(quality)
  image = placement.perturbed(placement.image_of_structure(reference), rotation, rms, seed=seed)
  if carbon:
    image = placement.MoleculeImage.of(image.sites_cart, ["C"] * len(image.elements))
  ideal = placement.placed_structure(image, np.eye(3), true_centroid_frac(reference),
                                     f_obs.crystal_symmetry())
  composition = compare.composition_counts(reference)
  solution = placement.finish_placed(f_obs, image, composition=composition, params=params)
  best = solution.placement.best
  placed = baselines.score_against_reference(ideal, best.xray_structure, tolerance=0.5)
  final = baselines.score_against_reference(reference, solution.finished.xray_structure, tolerance=0.5)
  n_ref = reference.scatterers().size()
  return dict(cut=cut, quality=quality, d_min=round(f_obs.d_min(), 3), n_reflections=f_obs.size(),
              n_atoms=n_ref, n_orientations=solution.placement.n_orientations,
              placed_matched=placed["n_matched"], top_peak_right=placed["n_matched"] >= 0.9 * n_ref,
              placed_cc=round(best.cc, 3), final_matched=final["n_matched"],
              matches=final["n_matched"] >= 0.9 * n_ref, r1=round(solution.finished.r1, 3),
              cc=round(solution.finished.cc, 3), p2a_solved=bool(solution.explained),
              why_not="; ".join(solution.reasons), time_s=round(solution.seconds, 1),
              place_s=round(solution.placement.seconds, 1))


class Simulated:
  """A packed training crystal (cctbx_p2a.packing) as a measured set: |F| of
  the whole structure, hydrogens included, to 1.4 A with 3 % noise; the
  reference is its non-H asymmetric unit."""

  def __init__(self, seed, group, n_atoms):
    from cctbx_p2a import packing
    params = packing.default_params()
    params.packing.space_groups = [group]
    params.packing.n_atoms = list(n_atoms)
    crystal = packing.generate(seed, params)
    f = crystal.xray_structure.structure_factors(d_min=1.4, algorithm="direct").f_calc().amplitudes()
    rng = np.random.default_rng(seed)
    from cctbx.array_family import flex
    data = f.data().as_numpy_array()
    noisy = np.abs(data * (1 + 0.03 * rng.normal(size=data.size)))
    self.f_obs = f.customized_copy(data=flex.double(noisy), sigmas=flex.double(0.03 * data + 1e-3))
    self.f_obs.set_observation_type_xray_amplitude()
    self.reference = crystal.non_h_structure
    self.name = "packed_%s_%d" % (group.replace("/", ""), seed)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("folder", nargs="?", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--cuts", default="1.5,2.0")
  ap.add_argument("--qualities", default=",".join(QUALITIES),
                  help="comma-separated; 'harder' adds %s" % ",".join(HARDER))
  ap.add_argument("--seeds", default="0", help="comma-separated perturbation seeds (random axis, noise)")
  ap.add_argument("--rigid-body", default="true", choices=("true", "false"))
  ap.add_argument("--packed", type=int, default=0,
                  help="instead of the measured sets: this many packed crystals (cctbx_p2a.packing, "
                       "simulated |F|) per space group")
  ap.add_argument("--packed-atoms", default="8,24", help="non-H atom range of the packed molecules")
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  params = placement.default_params()
  if args.packed:
    from cctbx_p2a import packing
    n_atoms = [int(x) for x in args.packed_atoms.split(",")]
    sets = [(None, Simulated(k, g, n_atoms)) for g in packing.SPACE_GROUPS for k in range(args.packed)]
  else:
    sets = [(s, None) for s in [measured.thpp_set()] if s] + [(s, None) for s in measured.find_sets(args.folder)]
  params.placement.rigid_body = args.rigid_body == "true"
  qualities = [q for part in args.qualities.split(",") for q in (HARDER if part == "harder" else [part])]
  seeds = [int(x) for x in args.seeds.split(",")]
  rows = []
  for s, simulated in sets:
    if simulated is not None:
      observed, reference, s = simulated, simulated.reference, simulated
    else:
      observed, reference = measured.load(s)
    for cut in [float(c) for c in args.cuts.split(",")]:
      for quality, seed in [(q, k) for q in qualities for k in seeds]:
        t0 = time.time()
        row = run_one(observed, reference, cut, quality, seed, params)
        row["set"], row["seed"] = s.name, seed
        row["space_group"] = str(observed.f_obs.space_group_info())
        rows.append(row)
        print("%-18s %.1f %-15s placed %2d/%-2d CC %.3f | final %2d/%-2d R1 %.3f %s %s  %.0f s" % (
          s.name, cut, quality, row["placed_matched"], row["n_atoms"], row["placed_cc"],
          row["final_matched"], row["n_atoms"], row["r1"], "MATCH" if row["matches"] else "-",
          "P2A-SOLVED" if row["p2a_solved"] else "", time.time() - t0), file=sys.stderr, flush=True)
  print("| set | space group | cut (A) | reflections | image | seed | top peak right | matches published "
        "(>= 90 % within 0.5 A) | p2a would call it solved | R1 | why not solved | s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print("| %s | %s | %.1f | %d | %s | %d | %s (%d/%d) | %s (%d/%d) | %s | %.3f | %s | %.0f |" % (
      r["set"], r["space_group"], r["cut"], r["n_reflections"], r["quality"], r["seed"],
      "yes" if r["top_peak_right"] else "no", r["placed_matched"], r["n_atoms"],
      "**yes**" if r["matches"] else "no", r["final_matched"], r["n_atoms"],
      "yes" if r["p2a_solved"] else "no", r["r1"], r["why_not"][:90], r["time_s"]))
  print()
  print("%d sets, perturbation seeds %s, rigid body %s:" % (len(sets), args.seeds, args.rigid_body))
  print()
  print("| cut (A) | image | top peak right | matches published | p2a would call it solved |")
  print("|---|---|---|---|---|")
  for cut in [float(c) for c in args.cuts.split(",")]:
    for quality in qualities:
      sel = [r for r in rows if r["cut"] == cut and r["quality"] == quality]
      print("| %.1f | %s | %d of %d | %d of %d | %d of %d |" % (
        cut, quality, sum(r["top_peak_right"] for r in sel), len(sel), sum(r["matches"] for r in sel),
        len(sel), sum(r["p2a_solved"] for r in sel), len(sel)))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()

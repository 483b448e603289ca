"""The crystal network (route a2) end to end, beside its untrained control.

    python benchmarks/crystal_network.py MODEL [--packed N] [--measured] [--cuts 1.5,2.0]
        [--json out.json]

MODEL is a crystal network's stem (e.g. training/runs/crystals/crystals).  For
every case and cut, and for the trained network and the same network
untrained (compare.untrained_model: same architecture, grids and read-out,
torch's default initialisation, map put on the trained map's scale):

  1. the Patterson window of |F_obs| (phasing.network_input: as the card
     says, the input p2a.solve gives it) -> the network's map;
  2. image: the map's n highest peaks (n = the composition's atom count)
     against the true molecule centred on its centroid, in the best of its
     Laue orientations (atoms within 0.5 and 1.0 A; the read-out tries them
     all, so any copy will do);
  3. placement.finish_placed: the image (its n highest peaks, all carbon)
     in every Laue orientation x translation function -> CC -> rigid body ->
     finishing with the composition -> phasing.verdict;
  4. matches published: >= 90 % of the reference's non-H atoms within 0.5 A
     (origin shifts and hand allowed), the issue's rule.

Cases: --packed N held-out crystals of the model's store (seeds the
training never saw; |F| of the whole crystal, hydrogens included, U_iso 0.03,
3 % noise) and/or --measured: the development sets (thpp and
../shared/data/measured), as measured.load reads them.
"""
import argparse
import json
import os
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, compare, crystal_data, measured, model_files, patterson, phasing, placement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def packed_cases(card, n, store_path=None, seed=0):
  """n held-out crystals of the model's store, as (name, f_obs at 1.0 A, reference)."""
  store_info = card["training_data"]["crystal_store"]
  path = store_path or os.path.join(REPO, "training", store_info["path"])
  store = crystal_data.CrystalStore.load(path)
  holdout = 10
  held = [c for c in store.crystals[:store_info["crystal_count"]] if c.seed % holdout == 0]
  rng = np.random.default_rng(seed)
  from cctbx.array_family import flex
  out = []
  for crystal in held[:n]:
    xs = crystal.xray_structure(u_iso=0.03)
    f = xs.structure_factors(d_min=1.0, algorithm="direct").f_calc().amplitudes()
    data = f.data().as_numpy_array()
    noisy = np.abs(data * (1 + 0.03 * rng.normal(size=data.size)))
    f_obs = f.customized_copy(data=flex.double(noisy), sigmas=flex.double(0.03 * data + 1e-3))
    f_obs.set_observation_type_xray_amplitude()
    out.append(("packed_%d" % crystal.seed, f_obs, crystal.xray_structure(hydrogens=False)))
  return out


def measured_cases(folder):
  sets = [s for s in [measured.thpp_set()] if s] + (measured.find_sets(folder) if folder else [])
  out = []
  for s in sets:
    observed, reference = measured.load(s)
    out.append((s.name, observed.f_obs, reference))
  return out


def image_score(image, reference):
  """Atoms of the true image (its best Laue copy) within 0.5 and 1.0 A of
  the image's sites: the map's n highest peaks, which is all the read-out
  uses."""
  if image is None:
    return 0, 0
  truth = placement.image_of_structure(reference).sites_cart
  best = (0, 0)
  for r in placement.laue_rotations(reference.crystal_symmetry()):
    moved = truth @ np.asarray(r).T
    d = np.linalg.norm(moved[:, None, :] - image.sites_cart[None], axis=2).min(axis=1)
    best = max(best, (int(np.sum(d <= 1.0)), int(np.sum(d <= 0.5))))
  return best[1], best[0]


def run_case(model, name, f_obs, reference, cut, params):
  f = f_obs.resolution_filter(d_min=cut)
  t0 = time.time()
  x = phasing.network_input(f, model)[0]
  y = model.predict(x)
  if "untrained" in model.name:
    y = patterson.on_atom_map_scale(y)
  composition = compare.composition_counts(reference)
  n_sites = reference.scatterers().size()
  image = placement.image_from_atom_map(y, model.output_voxel, n_sites)
  within_05, within_10 = image_score(image, reference)
  row = dict(set=name, model=model.name, cut=cut, n_atoms=n_sites, n_reflections=f.size(),
             space_group=str(f.space_group_info()), image_within_0_5=within_05, image_within_1_0=within_10,
             n_peaks=0 if image is None else len(image.sites_cart), final_matched=0, matches=False,
             p2a_solved=False, r1=None)
  if image is not None and len(image.sites_cart) >= 3:
    solution = placement.finish_placed(f, image, composition=composition, params=params)
    final = baselines.score_against_reference(reference, solution.finished.xray_structure, tolerance=0.5)
    row.update(final_matched=final["n_matched"], matches=final["n_matched"] >= 0.9 * n_sites,
               p2a_solved=bool(solution.explained), r1=round(solution.finished.r1, 3))
  row["time_s"] = round(time.time() - t0, 1)
  return row


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("model")
  ap.add_argument("--packed", type=int, default=0)
  ap.add_argument("--store", default=None, help="the model's crystal store (default training/<its name>)")
  ap.add_argument("--measured", action="store_true")
  ap.add_argument("--folder", default=os.path.join(REPO, "..", "shared", "data", "measured"),
                  help="measured sets beside cctbx's thpp ('' for thpp alone)")
  ap.add_argument("--cuts", default="1.5,2.0")
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  trained = model_files.load(args.model)
  models = [trained, compare.untrained_model(trained)]
  params = placement.default_params()
  cases = (packed_cases(trained.card, args.packed, args.store) if args.packed else []) + \
    (measured_cases(args.folder) if args.measured else [])
  rows = []
  for name, f_obs, reference in cases:
    for cut in [float(c) for c in args.cuts.split(",")]:
      for model in models:
        r = run_case(model, name, f_obs, reference, cut, params)
        rows.append(r)
        print("%-22s %.1f %-28s image %2d/%2d within 0.5, %2d within 1.0 (%3d peaks) | final %2d/%-2d %s %s "
              "%.0f s" % (name, cut, model.name[:28], r["image_within_0_5"], r["n_atoms"], r["image_within_1_0"],
                          r["n_peaks"], r["final_matched"], r["n_atoms"], "MATCH" if r["matches"] else "-",
                          "P2A-SOLVED" if r["p2a_solved"] else "", r["time_s"]), file=sys.stderr, flush=True)
  print("| cases | cut (A) | network | image atoms within 0.5 A | within 1.0 A | atoms within 0.5 A after "
        "finishing | matches published (>= 90 % within 0.5 A) | p2a would call it solved |")
  print("|---|---|---|---|---|---|---|---|")
  for kind in ("packed", "measured"):
    for cut in [float(c) for c in args.cuts.split(",")]:
      for model in models:
        sel = [r for r in rows if r["cut"] == cut and r["model"] == model.name and
               r["set"].startswith("packed_") == (kind == "packed")]
        if not sel:
          continue
        atoms = sum(r["n_atoms"] for r in sel)
        print("| %d %s | %.1f | %s | %.0f %% | %.0f %% | %.0f %% | %d | %d |" % (
          len(sel), kind, cut, "trained" if model is trained else "untrained (control)",
          100.0 * sum(r["image_within_0_5"] for r in sel) / atoms,
          100.0 * sum(r["image_within_1_0"] for r in sel) / atoms,
          100.0 * sum(r["final_matched"] for r in sel) / atoms,
          sum(r["matches"] for r in sel), sum(r["p2a_solved"] for r in sel)))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()

"""A known molecule through `p2a.solve` itself: the measured sets cut to
1.5 and 2.0 A, solved with solve.molecule= (a model file) or solve.smiles=
and solve.start=molecule, scored against the published model.

    python benchmarks/known_molecule_solve.py [FOLDER] [--cuts 1.5,2.0]
        [--kinds published_random,rdkit,smiles] [--seeds 0,1,2] [--json out.json]

Kinds (benchmarks/known_molecule.py builds the first two):
  published_random  the published non-H geometry turned at random, as an .xyz
                    file: the answer's own conformation (an upper bound);
  rdkit             one ETKDG + MMFF conformer of the published molecule
                    (RDKit, from its connectivity), as an .xyz file;
  smiles            the published molecule as SMILES (RDKit's, with its
                    stereocentres), solve.smiles= with solve.conformers
                    (5) conformers: what a chemist who knows only the 2D
                    structure would type.
Columns: matches = >= 90 % of the published non-H atoms within 0.5 A
(measured.py's rule); p2a SOLVED = what p2a.solve printed.  The network
takes no part in this start.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np
from libtbx.utils import Sorry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import known_molecule as km_bench  # noqa: E402

from cctbx_p2a import baselines, measured, phasing  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_xyz(path, image):
  with open(path, "w") as f:
    f.write("%d\nsearch model\n" % len(image.elements))
    for e, x in zip(image.elements, image.sites_cart):
      f.write("%s %.5f %.5f %.5f\n" % (e, x[0], x[1], x[2]))


def run_one(s, observed, reference, cut, kind, seed, folder):
  params = phasing.default_params()
  params.solve.start = "molecule"
  params.solve.seed = seed
  rmsd = None
  if kind == "smiles":
    km_bench.rdkit_conformer(s, reference, seed)   # raises ValueError when RDKit cannot build it
    params.solve.smiles = km_bench.rdkit_conformer.smiles
  else:
    image, _, _, _, rmsd = km_bench.search_model(kind, s, reference, seed)
    path = os.path.join(folder, "%s_%s_%d.xyz" % (s.name, kind, seed))
    write_xyz(path, image)
    params.solve.molecule = path
  f_obs = observed.f_obs.resolution_filter(d_min=cut)
  t0 = time.time()
  try:
    result = phasing.solve(f_obs, params=params)
  except Sorry as e:   # refused data (too few reflections ...): a row that says so
    return dict(set=s.name, cut=cut, kind=kind, seed=seed, conformer_rmsd=rmsd, n_reflections=f_obs.size(),
                n_atoms=reference.scatterers().size(), n_matched=0, matches=False, solved=False, r1=None,
                start_detail=None, why_not=["refused: %s" % e], notes=[], time_s=round(time.time() - t0, 1))
  seconds = time.time() - t0
  score = baselines.score_against_reference(reference, result.xray_structure, tolerance=0.5)
  n_ref = reference.scatterers().size()
  return dict(set=s.name, cut=cut, kind=kind, seed=seed, conformer_rmsd=rmsd, n_reflections=f_obs.size(),
              n_atoms=n_ref, n_matched=score["n_matched"], matches=score["n_matched"] >= 0.9 * n_ref,
              solved=bool(result.solved), r1=round(result.r1, 3), start_detail=result.start_detail,
              why_not=[n[len("not solved: "):] for n in result.notes if n.startswith("not solved: ")],
              notes=result.notes, time_s=round(seconds, 1))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("folder", nargs="?", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--cuts", default="1.5,2.0")
  ap.add_argument("--kinds", default="published_random,rdkit,smiles")
  ap.add_argument("--seeds", default="0")
  ap.add_argument("--sets", default=None)
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  sets = [x for x in [measured.thpp_set()] if x] + measured.find_sets(args.folder)
  if args.sets:
    sets = [x for x in sets if x.name in args.sets.split(",")]
  cuts = [float(c) for c in args.cuts.split(",")]
  kinds = args.kinds.split(",")
  seeds = [int(x) for x in args.seeds.split(",")]
  rows, skipped = [], []
  t_all = time.time()
  with tempfile.TemporaryDirectory() as folder:
    for s in sets:
      observed, reference = measured.load(s)
      for cut in cuts:
        for kind in kinds:
          for seed in seeds:
            try:
              row = run_one(s, observed, reference, cut, kind, seed, folder)
            except ValueError as e:
              skipped.append((s.name, cut, kind, seed, str(e)))
              continue
            rows.append(row)
            print("%-18s %.1f %-16s seed %d %2d/%-2d %-5s %-10s R1 %s %5.1f s  %s | %s" % (
              s.name, cut, kind, seed, row["n_matched"], row["n_atoms"], "MATCH" if row["matches"] else "-",
              "SOLVED" if row["solved"] else "not solved", row["r1"], row["time_s"], row["start_detail"],
              "; ".join(row["why_not"])[:100]), file=sys.stderr, flush=True)
  print("| set | cut (A) | kind | seed | conformer RMSD (A) | atoms within 0.5 A | matches published | p2a.solve | R1 | s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print("| %s | %.1f | %s | %d | %s | %d/%d | %s | %s | %s | %.0f |" % (
      r["set"], r["cut"], r["kind"], r["seed"], "-" if r["conformer_rmsd"] is None else "%.2f" % r["conformer_rmsd"],
      r["n_matched"], r["n_atoms"], "**yes**" if r["matches"] else "no",
      "**SOLVED**" if r["solved"] else ("refused" if r["r1"] is None else "not solved"),
      "-" if r["r1"] is None else "%.3f" % r["r1"], r["time_s"]))
  for name, cut, kind, seed, why in skipped:
    print("\nskipped: %s %.1f %s seed %d: %s" % (name, cut, kind, seed, why))
  print("\n| cut (A) | kind | runs | matches published | p2a.solve SOLVED | of those, wrong | median s |")
  print("|---|---|---|---|---|---|---|")
  for cut in cuts:
    for kind in kinds:
      sel = [r for r in rows if r["cut"] == cut and r["kind"] == kind]
      if sel:
        print("| %.1f | %s | %d | %d | %d | %d | %.0f |" % (
          cut, kind, len(sel), sum(r["matches"] for r in sel), sum(r["solved"] for r in sel),
          sum(r["solved"] and not r["matches"] for r in sel), np.median([r["time_s"] for r in sel])))
  print("\nwall time %.0f s" % (time.time() - t_all))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(rows=rows, skipped=skipped), f, indent=1, default=str)


if __name__ == "__main__":
  main()

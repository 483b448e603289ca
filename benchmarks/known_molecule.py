"""What does a known molecule buy at 1.5 and 2.0 A?  The molecule's geometry
is given, its orientation in the crystal is not: a Patterson rotation search
(cctbx_p2a.rotation_search) finds it, then route (a)'s placement, rigid body,
finishing and verdict run as in benchmarks/oracle_placement.py.

    python benchmarks/known_molecule.py [FOLDER] [--cuts 1.5,2.0]
        [--kinds published_random,rdkit] [--seeds 0,1,2] [--json out.json]

Search models (seed: the random orientation and the conformer's embedding):
  published_random  the published non-H asymmetric unit (as oracle_placement's
                    image), centred, turned by a uniformly random rotation;
  rdkit             an independent conformer: RDKit molecule from the
                    published atoms' connectivity and bond orders (hydrogens
                    from the published model, or counted from the heavy-atom
                    geometry where it has none), ETKDG + MMFF, H dropped,
                    centred, turned at random.  Its RMSD to the published
                    geometry (Kabsch, atoms in correspondence) is reported.
Columns:
  angle top-1 / chosen  angle (degrees, modulo the Laue group and the hand)
                    between the true rotation and the best Patterson
                    rotation / the rotation that won the CC after rigid body;
  top placement right  the best-CC placement (before rigid body) puts >= 90 %
                    of the model's atoms within 0.5 A of the model superposed
                    on the published molecule (origin shifts and hand allowed);
  matches           >= 90 % of the published atoms within 0.5 A after
                    finishing (measured.py's rule);
  p2a solved        phasing.verdict would call it solved.
FOLDER defaults to ../shared/data/measured; cctbx's thpp is always added.
"""
import argparse
import json
import os
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import baselines, compare, files, measured, placement, rotation_search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_placement import true_centroid_frac  # noqa: E402

KINDS = ("published_random", "rdkit")


def kabsch(moving, target):
  """(rotation R, RMSD) superposing centred `moving` onto centred `target`
  (target ~ moving @ R.T), proper rotations only."""
  a = moving - moving.mean(axis=0)
  b = target - target.mean(axis=0)
  u, _, vt = np.linalg.svd(a.T @ b)
  d = np.sign(np.linalg.det(u @ vt))
  r = (u @ np.diag([1, 1, d]) @ vt).T
  rmsd = float(np.sqrt(((a @ r.T - b) ** 2).sum(axis=1).mean()))
  return r, rmsd


# -- the RDKit conformer ------------------------------------------------------

def hydrogens_from_geometry(mol, cart):
  """Hydrogen count per heavy atom of an H-less model, from its neighbours'
  count, bond lengths and planarity (sp/sp2/sp3): what a chemist would draw."""
  counts = []
  for atom in mol.GetAtoms():
    i = atom.GetIdx()
    nb = [n.GetIdx() for n in atom.GetNeighbors()]
    lengths = [np.linalg.norm(cart[i] - cart[j]) for j in nb]
    e, n = atom.GetSymbol(), len(nb)
    planar = False
    if n == 3:
      v = cart[nb] - cart[i]
      normal = np.cross(v[1] - v[0], v[2] - v[0])
      planar = abs(np.dot(normal / (np.linalg.norm(normal) + 1e-9), v[0])) < 0.25
    short = lengths and max(lengths) < 1.43
    if e == "C":
      h = {4: 0, 3: 0 if planar else 1}.get(n)
      if n == 2:
        angle = np.degrees(np.arccos(np.clip(np.dot(*(cart[nb] - cart[i])) / (lengths[0] * lengths[1]), -1, 1)))
        h = 0 if angle > 170 else (1 if short else 2)
      if n == 1:
        h = 0 if lengths[0] < 1.22 else (2 if lengths[0] < 1.40 else 3)
      if n == 0:
        h = 4
    elif e == "N":
      h = {3: 0, 2: 0 if short else 1, 1: 0 if lengths[0] < 1.2 else 2, 0: 3}.get(n, 0)
    elif e == "O":
      h = {2: 0, 1: 0 if lengths[0] < 1.3 else 1, 0: 2}.get(n, 0)
    elif e == "S":
      h = {1: 1}.get(n, 0)
    else:
      h = 0
    counts.append(h)
  return counts


def rdkit_conformer(measured_set, reference, seed):
  """(elements, sites (n, 3) centred, indices into reference) of an
  ETKDG + MMFF conformer of the published molecule, or raises ValueError
  with the reason it cannot be built."""
  from rdkit import Chem, RDLogger
  from rdkit.Chem import AllChem, rdDetermineBonds
  RDLogger.DisableLog("rdApp.*")
  full = files.read_structure(measured_set.reference)
  orth = placement.orthogonalisation(full.unit_cell())
  labels = [sc.label for sc in reference.scatterers()]
  by_label = {sc.label: i for i, sc in enumerate(full.scatterers())}
  # the published non-H sites, minor alternatives (occupancy < 0.5) left out of the molecule
  heavy = [i for i, sc in enumerate(reference.scatterers()) if sc.occupancy >= 0.5]
  full_heavy = [by_label[labels[i]] for i in heavy]
  hydrogens = [i for i, sc in enumerate(full.scatterers()) if sc.scattering_type in ("H", "D")]
  cart_all = np.array(full.sites_frac()) @ orth.T
  order = full_heavy + hydrogens
  elements = [full.scatterers()[i].scattering_type.capitalize() for i in order]
  cart = cart_all[order]
  xyz = "%d\n\n" % len(order) + "".join("%s %.5f %.5f %.5f\n" % (e, *c) for e, c in zip(elements, cart))
  mol = Chem.MolFromXYZBlock(xyz)
  if mol is None:
    raise ValueError("RDKit cannot read the atoms")
  rdDetermineBonds.DetermineConnectivity(mol)
  if len(Chem.GetMolFrags(mol)) > 1:
    raise ValueError("the asymmetric unit is %d fragments" % len(Chem.GetMolFrags(mol)))
  if not hydrogens:
    counts = hydrogens_from_geometry(mol, cart)
    rw = Chem.RWMol(mol)
    for i, h in enumerate(counts):
      for _ in range(h):
        k = rw.AddAtom(Chem.Atom(1))
        rw.AddBond(i, k, Chem.BondType.SINGLE)
    conf = rw.GetConformer()
    rng = np.random.default_rng(0)
    for k in range(len(order), rw.GetNumAtoms()):
      parent = rw.GetAtomWithIdx(k).GetNeighbors()[0].GetIdx()
      p = conf.GetAtomPosition(parent)
      d = rng.normal(size=3)
      d /= np.linalg.norm(d)
      conf.SetAtomPosition(k, (p.x + d[0], p.y + d[1], p.z + d[2]))
    mol = rw.GetMol()
  try:
    rdDetermineBonds.DetermineBondOrders(mol, charge=0)
    Chem.SanitizeMol(mol)
  except Exception as e:  # RDKit raises several kinds
    raise ValueError("RDKit cannot assign bond orders (%s)" % str(e).split("\n")[0][:80])
  n_heavy = len(full_heavy)
  heavy_mol = Chem.RemoveHs(mol, sanitize=True)
  if heavy_mol.GetNumAtoms() != n_heavy:
    raise ValueError("hydrogen removal changed the heavy atoms")
  Chem.AssignStereochemistryFrom3D(heavy_mol)
  molh = Chem.AddHs(heavy_mol)
  ps = AllChem.ETKDGv3()
  ps.randomSeed = 1000 + int(seed)
  if AllChem.EmbedMolecule(molh, ps) != 0:
    raise ValueError("ETKDG embedding failed")
  if AllChem.MMFFHasAllMoleculeParams(molh):
    AllChem.MMFFOptimizeMolecule(molh, maxIters=2000)
  else:
    AllChem.UFFOptimizeMolecule(molh, maxIters=2000)
  sites = molh.GetConformer().GetPositions()[:n_heavy]
  # the molecule's graph automorphisms (two methyls on one S, a phenyl's ring flip): the
  # correspondence with the published atoms is known only up to these
  automorphisms = heavy_mol.GetSubstructMatches(heavy_mol, uniquify=False, useChirality=False, maxMatches=1000)
  rdkit_conformer.smiles = Chem.MolToSmiles(heavy_mol)   # what a chemist would type (solve.smiles)
  rdkit_conformer.crystal = Chem.Mol(heavy_mol)           # the published conformation, bond orders assigned
  return [elements[i] for i in range(n_heavy)], sites - sites.mean(axis=0), heavy, automorphisms


# -- one run ------------------------------------------------------------------

def search_model(kind, measured_set, reference, seed):
  """(image turned at random, true rotation image -> crystal, true centroid
  (fractional), indices of the reference atoms it holds, conformer RMSD)."""
  orth = placement.orthogonalisation(reference.unit_cell())
  published = placement.image_of_structure(reference)
  q = rotation_search.random_rotations(1, seed=1000 + int(seed))[0]
  if kind == "published_random":
    image = placement.MoleculeImage.of(published.sites_cart @ q.T, published.elements)
    return image, q.T, true_centroid_frac(reference), list(range(len(published.elements))), 0.0
  elements, sites, heavy, automorphisms = rdkit_conformer(measured_set, reference, seed)
  cart = np.array(reference.sites_frac())[heavy] @ orth.T
  r0, rmsd = min((kabsch(sites[list(p)], cart) for p in automorphisms or [range(len(sites))]),
                 key=lambda fit: fit[1])
  image = placement.MoleculeImage.of(sites @ q.T, elements)
  centroid = np.linalg.solve(orth, cart.mean(axis=0))
  return image, r0 @ q.T, centroid, heavy, rmsd


def run_one(measured_set, observed, reference, cut, kind, seed, params):
  f_obs = observed.f_obs.resolution_filter(d_min=cut)
  cs = f_obs.crystal_symmetry()
  t0 = time.time()
  image, true_rotation, centroid, heavy, rmsd = search_model(kind, measured_set, reference, seed)
  composition = compare.composition_counts(reference)
  solution = rotation_search.place_known_molecule(f_obs, image, composition=composition, params=params,
                                                  seed=seed)
  found = solution.rotation_search
  laue = found.laue
  angles = [rotation_search.angle_modulo_laue(true_rotation, h.rotation, laue) for h in found.hits]
  chosen_angle = rotation_search.angle_modulo_laue(true_rotation, solution.rotation, laue)
  ideal = placement.placed_structure(image, true_rotation, centroid, cs)
  placed = baselines.score_against_reference(ideal, solution.top.xray_structure, tolerance=0.5)
  final = baselines.score_against_reference(reference, solution.finished.xray_structure, tolerance=0.5)
  n_ref = reference.scatterers().size()
  n_img = len(image.elements)
  return dict(cut=cut, kind=kind, d_min=round(f_obs.d_min(), 3), n_reflections=f_obs.size(), n_atoms=n_ref,
              n_model_atoms=n_img, conformer_rmsd=round(rmsd, 3),
              angle_top1=round(angles[0], 1), angles=[round(a, 1) for a in angles],
              first_hit_within_15=next((k for k, a in enumerate(angles) if a <= 15), None),
              angle_chosen=round(chosen_angle, 1), rotation_rank=solution.rotation_rank,
              patterson_z=[round(h.z_score, 2) for h in found.hits],
              search_s=round(found.seconds, 1), placed_matched=placed["n_matched"],
              top_placement_right=placed["n_matched"] >= 0.9 * n_img, start_cc=round(solution.start.cc, 3),
              final_matched=final["n_matched"], matches=final["n_matched"] >= 0.9 * n_ref,
              r1=round(solution.finished.r1, 3), cc=round(solution.finished.cc, 3),
              p2a_solved=bool(solution.explained), why_not="; ".join(solution.reasons),
              notes=solution.notes, time_s=round(time.time() - t0, 1))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("folder", nargs="?", default=os.path.join(REPO, "..", "shared", "data", "measured"))
  ap.add_argument("--cuts", default="1.5,2.0")
  ap.add_argument("--kinds", default=",".join(KINDS))
  ap.add_argument("--seeds", default="0")
  ap.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  params = placement.default_params()
  sets = [s for s in [measured.thpp_set()] if s] + measured.find_sets(args.folder)
  if args.sets:
    sets = [s for s in sets if s.name in args.sets.split(",")]
  kinds = args.kinds.split(",")
  cuts = [float(c) for c in args.cuts.split(",")]
  seeds = [int(x) for x in args.seeds.split(",")]
  rows, skipped = [], []
  t_all = time.time()
  for s in sets:
    observed, reference = measured.load(s)
    for cut in cuts:
      for kind in kinds:
        for seed in seeds:
          try:
            row = run_one(s, observed, reference, cut, kind, seed, params)
          except ValueError as e:
            skipped.append((s.name, cut, kind, seed, str(e)))
            print("%-18s %.1f %-16s seed %d SKIPPED: %s" % (s.name, cut, kind, seed, e), file=sys.stderr,
                  flush=True)
            continue
          row["set"], row["seed"] = s.name, seed
          row["space_group"] = str(observed.f_obs.space_group_info())
          rows.append(row)
          print("%-18s %.1f %-16s seed %d rmsd %.2f angle %5.1f/%5.1f (hit %s) placed %2d/%-2d | final %2d/%-2d "
                "R1 %.3f %s %s  %.0f s" % (
                  s.name, cut, kind, seed, row["conformer_rmsd"], row["angle_top1"], row["angle_chosen"],
                  row["rotation_rank"], row["placed_matched"], row["n_model_atoms"], row["final_matched"],
                  row["n_atoms"], row["r1"], "MATCH" if row["matches"] else "-",
                  "P2A-SOLVED" if row["p2a_solved"] else "", row["time_s"]), file=sys.stderr, flush=True)
  print("| set | space group | cut (A) | reflections | kind | seed | conformer RMSD (A) | angle top-1 / chosen "
        "(deg) | top placement right | matches published | p2a would call it solved | R1 | why not solved | s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print("| %s | %s | %.1f | %d | %s | %d | %.2f | %.0f / %.0f | %s (%d/%d) | %s (%d/%d) | %s | %.3f | %s | %.0f |" % (
      r["set"], r["space_group"], r["cut"], r["n_reflections"], r["kind"], r["seed"], r["conformer_rmsd"],
      r["angle_top1"], r["angle_chosen"], "yes" if r["top_placement_right"] else "no", r["placed_matched"],
      r["n_model_atoms"], "**yes**" if r["matches"] else "no", r["final_matched"], r["n_atoms"],
      "yes" if r["p2a_solved"] else "no", r["r1"], r["why_not"][:80], r["time_s"]))
  print()
  for name, cut, kind, seed, why in skipped:
    print("skipped: %s %.1f %s seed %d: %s" % (name, cut, kind, seed, why))
  print()
  print("%d sets, seeds %s, %.0f s in all:" % (len(sets), args.seeds, time.time() - t_all))
  print()
  print("| cut (A) | kind | runs | top-1 rotation within 15 deg | top placement right | matches published | "
        "p2a would call it solved |")
  print("|---|---|---|---|---|---|---|")
  for cut in cuts:
    for kind in kinds:
      sel = [r for r in rows if r["cut"] == cut and r["kind"] == kind]
      print("| %.1f | %s | %d | %d | %d | %d | %d |" % (
        cut, kind, len(sel), sum(r["angle_top1"] <= 15 for r in sel), sum(r["top_placement_right"] for r in sel),
        sum(r["matches"] for r in sel), sum(r["p2a_solved"] for r in sel)))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(rows=rows, skipped=skipped), f, indent=1)


if __name__ == "__main__":
  main()

"""A molecule the user knows: its geometry as a search model (solve.molecule=
a file, or solve.smiles= through RDKit), placed in the crystal by the
Patterson rotation search (cctbx_p2a.rotation_search), the translation
function and a rigid-body refinement, then finished like every start.

Why: a chemist usually knows what was crystallised.  Below atomic
resolution (1.5-2.0 A) direct methods find nothing (docs/crystals.md), but a
model of the molecule within about 0.3-0.5 A of the crystal's conformation
places itself (docs/crystals.md, "A known molecule").  The network takes no
part in this start.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
import os
import time

import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a import placement

FORMATS = ".xyz, .mol, .sdf, .pdb or a small-molecule .cif"


def _element(text):
  e = "".join(ch for ch in str(text).strip() if ch.isalpha())
  return e[:1].upper() + e[1:].lower() if e else ""


def _known_element(e):
  from cctbx.eltbx import tiny_pse
  try:
    tiny_pse.table(e)
    return True
  except (RuntimeError, ValueError):
    return False


def _image(sites, elements, path):
  """The non-H atoms as a MoleculeImage; a clear Sorry for what cannot be one."""
  elements = [_element(e) for e in elements]
  bad = sorted({e or "(none)" for e in elements if not e or not _known_element(e)})
  if bad:
    raise Sorry("%s: unknown element(s) %s. Give each atom its element symbol (C, N, O, Cl, ...)."
                % (path, ", ".join(bad)))
  keep = [i for i, e in enumerate(elements) if e not in ("H", "D")]
  if len(keep) < 3:
    raise Sorry("%s holds %d non-H atom(s); a search model needs at least 3." % (path, len(keep)))
  sites = np.asarray(sites, dtype=float).reshape(-1, 3)[keep]
  if not np.all(np.isfinite(sites)):
    raise Sorry("%s: some coordinates are not numbers." % path)
  return placement.MoleculeImage.of(sites, [elements[i] for i in keep])


def _read_xyz(path, lines):
  try:
    n = int(lines[0].split()[0])
    rows = [lines[2 + i].split() for i in range(n)]
    return [[float(v) for v in r[1:4]] for r in rows], [r[0] for r in rows]
  except (IndexError, ValueError):
    raise Sorry("%s is not an XYZ file: the first line must give the atom count, the second a title, "
                "then one 'element x y z' line per atom." % path)


def _read_mol(path, lines):
  if len(lines) > 3 and "V3000" in lines[3]:
    raise Sorry("%s is a V3000 molfile; save it as V2000 (or .xyz)." % path)
  try:
    n = int(lines[3][:3])
    rows = [lines[4 + i] for i in range(n)]
    sites = [[float(r[0:10]), float(r[10:20]), float(r[20:30])] for r in rows]
    return sites, [r[31:34] for r in rows]
  except (IndexError, ValueError):
    raise Sorry("%s is not a V2000 molfile (.mol/.sdf): its counts line (line 4) or atom block "
                "could not be read." % path)


def _read_pdb(path):
  import iotbx.pdb
  try:
    atoms = iotbx.pdb.input(file_name=path).atoms()
  except Exception as e:  # iotbx raises its own Sorry subclasses and RuntimeErrors
    raise Sorry("%s could not be read as PDB: %s" % (path, str(e).splitlines()[0]))
  return ([a.xyz for a in atoms],
          [a.element.strip() or a.name.strip()[:1] for a in atoms])


def _read_cif(path):
  import iotbx.cif
  try:
    structures = iotbx.cif.reader(file_path=path).build_crystal_structures()
  except Exception as e:
    raise Sorry("%s could not be read as a small-molecule CIF: %s" % (path, str(e).splitlines()[0]))
  if not structures:
    raise Sorry("%s holds no atom sites (_atom_site_fract_x ...)." % path)
  xs = list(structures.values())[0]
  return list(xs.sites_cart()), list(xs.scatterers().extract_scattering_types())


def read_molecule(path):
  """The non-H atoms of a molecule file as a MoleculeImage (any orientation
  and position: only the geometry matters)."""
  if not os.path.isfile(path):
    raise Sorry("solve.molecule=%s: no such file. Give the molecule as %s." % (path, FORMATS))
  ext = os.path.splitext(path)[1].lower()
  if ext == ".pdb" or ext == ".ent":
    sites, elements = _read_pdb(path)
  elif ext == ".cif":
    sites, elements = _read_cif(path)
  elif ext in (".xyz", ".mol", ".sdf", ".mdl"):
    with open(path, errors="replace") as f:
      lines = f.read().splitlines()
    sites, elements = _read_xyz(path, lines) if ext == ".xyz" else _read_mol(path, lines)
  else:
    raise Sorry("solve.molecule=%s: unknown file type %r. Give the molecule as %s." % (path, ext, FORMATS))
  return _image(sites, elements, path)


def _rdkit():
  try:
    import cctbx_p2a  # noqa: F401  (cctbx before RDKit's own libraries)
    from rdkit import Chem, RDLogger
  except ImportError:
    raise Sorry("solve.smiles needs RDKit, which p2a.solve does not install: pip install "
                "'cctbx_p2a[train]' (or give the molecule as a file, solve.molecule=).")
  RDLogger.DisableLog("rdApp.*")
  return Chem


@dataclass
class SmilesComponents:
  """A SMILES string's components ('.'-separated: a salt's ions, a solvate's
  solvent): the one searched for, the others, and the non-H composition of
  them all."""
  searched: str
  others: list
  composition: dict


def smiles_components(smiles):
  """The components of solve.smiles.  Why: RDKit embeds the components of
  one SMILES at arbitrary distances from each other, which no crystal
  holds, so a rigid body of them all cannot fit; the largest component
  (most non-H atoms, then most electrons) is searched for, and the others'
  atoms stay in the composition for the finishing's completion to find."""
  Chem = _rdkit()
  mol = Chem.MolFromSmiles(str(smiles))
  if mol is None:
    raise Sorry("solve.smiles=%s is not a SMILES string RDKit can read." % smiles)
  composition = {}
  for atom in mol.GetAtoms():
    if atom.GetAtomicNum() > 1:
      composition[atom.GetSymbol()] = composition.get(atom.GetSymbol(), 0) + 1
  parts = sorted(Chem.GetMolFrags(mol, asMols=True),
                 key=lambda m: (-m.GetNumHeavyAtoms(), -sum(a.GetAtomicNum() for a in m.GetAtoms())))
  if parts[0].GetNumHeavyAtoms() == 0:
    raise Sorry("solve.smiles=%s has no atom heavier than hydrogen to search with." % smiles)
  return SmilesComponents(searched=Chem.MolToSmiles(parts[0]), others=[Chem.MolToSmiles(m) for m in parts[1:]],
                          composition=composition)


def conformers_from_smiles(smiles, n, seed=0, pool=30, min_rmsd=0.3):
  """Up to n distinct conformers of a SMILES string, lowest MMFF energy
  first.  RDKit: hydrogens added, `pool` ETKDGv3 embeddings seeded by
  seed + 1 (RDKit's randomSeed 0 gives the same conformer every time),
  MMFF-optimised where MMFF knows every atom; conformers are kept in energy
  order when their heavy atoms lie more than min_rmsd A (best alignment,
  symmetry included) from every one kept before; hydrogens dropped.  Why:
  five embeddings of a rigid molecule are often one conformation five
  times, while the pool's distinct ones hold the crystal's (measured:
  docs/crystals.md).  A SMILES of several components gives conformers of
  its largest (smiles_components)."""
  Chem = _rdkit()
  from rdkit.Chem import AllChem, rdMolAlign
  parts = smiles_components(smiles)
  # one component: the string as given (its atom order is what seeds reproduce)
  mol = Chem.AddHs(Chem.MolFromSmiles(parts.searched if parts.others else str(smiles)))
  embed = AllChem.ETKDGv3()
  embed.randomSeed = int(seed) % (2 ** 31 - 1) + 1
  ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=max(1, int(n), int(pool or 0)), params=embed))
  if not ids:
    raise Sorry("RDKit could not embed solve.smiles=%s in 3D; give the molecule as a file "
                "(solve.molecule=)." % smiles)
  energies = [0.0] * len(ids)
  if AllChem.MMFFHasAllMoleculeParams(mol):
    energies = [e for _, e in AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)]
  heavy = Chem.RemoveHs(mol)
  kept = []
  for k in sorted(range(len(ids)), key=lambda k: energies[k]):   # stable: embedding order where no energies
    probe = Chem.Mol(heavy, confId=ids[k])
    if all(rdMolAlign.GetBestRMS(probe, Chem.Mol(heavy, confId=ids[j]), maxMatches=1000) > min_rmsd
           for j in kept):
      kept.append(k)
      if len(kept) == max(1, int(n)):
        break
  elements = [a.GetSymbol() for a in mol.GetAtoms()]
  return [_image(mol.GetConformer(ids[k]).GetPositions(), elements, "solve.smiles") for k in kept]


def search_models(params):
  """[(label, MoleculeImage)] from solve.molecule and solve.smiles."""
  s = params.solve
  models = []
  if s.molecule:
    models.append(("%s" % os.path.basename(s.molecule), read_molecule(s.molecule)))
  if s.smiles:
    conformers = conformers_from_smiles(s.smiles, s.conformers, s.seed, pool=s.conformer_pool,
                                        min_rmsd=s.conformer_min_rmsd)
    for k, image in enumerate(conformers):
      models.append(("SMILES conformer %d of %d" % (k + 1, len(conformers)), image))
  return models


def composition_and_note(params, models):
  """(element -> count, what to note) of the known molecule, one per
  asymmetric unit: every component of solve.smiles, else the first model's
  atoms."""
  if params.solve.smiles:
    parts = smiles_components(params.solve.smiles)
    if parts.others:
      return parts.composition, ("solve.smiles has %d components: the search model is the largest, %s; "
                                 "%s left to the finishing's completion" % (
                                   1 + len(parts.others), parts.searched, " ".join(parts.others)))
    return parts.composition, None
  return composition_of(models[0][1]), None


def reflection_params(params):
  """The reflections scope for this run: with a known molecule the floor on
  unique reflections is reflections.min_reflections_known_molecule, since a
  rigid placement (7 parameters) needs far fewer data than an ab initio start."""
  r = params.reflections
  if not (params.solve.molecule or params.solve.smiles) or r.min_reflections_known_molecule is None:
    return r
  r = copy.copy(r)
  r.min_reflections = r.min_reflections_known_molecule
  r.__inject__("min_reflections_name", "min_reflections_known_molecule")   # for the refusal's text
  return r


def composition_of(image):
  """Element -> count of the model's non-H atoms (one molecule per asymmetric unit)."""
  counts = {}
  for e in image.elements:
    counts[e] = counts.get(e, 0) + 1
  return counts


MAX_COPIES = 4


def copies_in_composition(composition, image):
  """How many copies of the molecule the asymmetric unit holds by the
  composition (element -> sites): k when every element's count is k times
  the molecule's (2 <= k <= MAX_COPIES, Z' = k), else 1."""
  if not composition:
    return 1
  own = composition_of(image)
  ratios = {composition.get(e, 0) / n for e, n in own.items()}
  ratios |= {1.0 * (e in own) for e in composition if composition[e] > 0 and e not in own}
  if len(ratios) != 1:
    return 1
  k = ratios.pop()
  return int(k) if k == int(k) and 2 <= k <= MAX_COPIES else 1


def place_further_copies(f_obs, image, best, n_copies, params):
  """Z' > 1: the copies placed so far are held fixed (their F_calc added in
  the translation function and in the rigid fit) while each further copy is
  placed: the rotation search's best orientations in every Laue
  orientation, the translation function's peaks scored by the CC of all
  copies, the placement.rigid_tried best refined as rigid bodies.  Returns
  (xray.structure of every copy, CC of them all)."""
  from cctbx_p2a import rotation_search   # noqa: F401  (best comes from it)
  pp = params.placement
  cs = f_obs.crystal_symmetry()
  f_search = f_obs.resolution_filter(d_max=pp.d_max) if pp.d_max else f_obs
  fo = f_obs.data().as_numpy_array()
  amplitudes = placement.RigidAmplitudes(f_obs, image.elements)
  laue = placement.laue_rotations(cs)
  placed, cc = best.start.xray_structure, best.start.cc
  for _ in range(n_copies - 1):
    f_part = f_obs.structure_factors_from_scatterers(placed, algorithm="direct").f_calc().data().as_numpy_array()
    pool = []
    for hit in best.rotation_search.hits:
      turned = placement.MoleculeImage.of(image.sites_cart @ hit.rotation.T, image.elements)
      for rotation in laue:
        model = placement.model_in_p1(turned, rotation, cs, pp.u_iso)
        tf = placement.translation_function(f_search, model, pp.resolution_factor, partial=placed)
        for t, _height in placement.grid_peaks(tf, pp.n_peaks):
          fc = amplitudes(amplitudes.placed(turned, rotation, t), pp.u_iso, f_part)
          pool.append((float(np.corrcoef(fo, fc)[0, 1]), turned, rotation, t))
    pool.sort(key=lambda p: -p[0])
    chosen = None
    for _cc, turned, rotation, t in pool[:max(1, pp.rigid_tried)]:
      turn, shift, u, rcc = placement.rigid_body_refine(f_obs, turned, rotation, t, pp.u_iso, f_part=f_part)
      if chosen is None or rcc > chosen[0]:
        chosen = (rcc, turned, turn, shift, u)
    cc, turned, turn, shift, u = chosen
    combined = placed.deep_copy_scatterers()
    combined.add_scatterers(placement.placed_structure(turned, turn, shift, cs, u).scatterers())
    placed = combined
  return placed, cc


def starts(f_obs, params, models, notes, timings, composition=None):
  """Every search model placed (rotation search, translation function, rigid
  body); yields (xray.structure, CC, "known_molecule", what it is, None),
  the best CC first, for the common finishing; with a composition of k
  molecules (Z' = k), k copies placed one after another.  (Offering the placement
  itself as a finished model where the data are too few to refine sites was
  tried: at 2.0 A it claimed a conformer 0.27 A from the crystal's with only
  13 of 16 atoms within 0.5 A, so it is not done; docs/crystals.md.)"""
  from cctbx_p2a import rotation_search
  t = time.time()
  pp = params.placement
  placed = []
  for label, image in models:
    best = rotation_search.best_placement(f_obs, image, params, n_rotations=pp.rotations_tried,
                                          n_rigid=pp.rigid_tried, seed=params.solve.seed,
                                          n_samples=pp.rotation_samples)
    found = best.rotation_search
    start, cc = best.start.xray_structure, best.start.cc
    n_copies = copies_in_composition(composition, image)
    if n_copies > 1:
      one = best.start.cc
      start, cc = place_further_copies(f_obs, image, best, n_copies, params)
      notes.append("known molecule (%s): the composition holds %d copies (Z' = %d); copies 2-%d placed with "
                   "the ones before held fixed: CC %.3f with one copy, %.3f with all" % (
                     label, n_copies, n_copies, n_copies, one, cc))
    notes.append("known molecule (%s, %d atoms): rotation search over %d orientations, %d vectors "
                 "%.1f-9 A%s, %.1f s; placed with CC %.3f (rotation %d of %d tried, Patterson z %.1f)" % (
                   label, len(image.elements), found.n_samples, found.n_vectors, best.shortest_vector,
                   " (bonds included: fewer than %d vectors are longer than 0.9 d_min)"
                   % rotation_search.MIN_SEARCH_VECTORS
                   if best.shortest_vector < max(1.0, 0.9 * f_obs.d_min()) else "", found.seconds,
                   best.start.cc, best.rotation_rank + 1, len(found.hits),
                   found.hits[best.rotation_rank].z_score))
    placed.append((cc, label, start))
  timings["known_molecule"] = time.time() - t
  for cc, label, xs in sorted(placed, key=lambda p: -p[0]):
    yield xs.deep_copy_scatterers(), cc, "known_molecule", "known molecule (%s) placed, CC" % label, None

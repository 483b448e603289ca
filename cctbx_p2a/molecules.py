"""Real molecules with 3D geometry for training and benchmarks (RDKit).

The paper's molecules are points at least 3 A apart; real ones have
1.0-1.5 A bonds, rings, hydrogens and heavy atoms.  This module makes
chemically valid molecules from three sources, all shipped inside the rdkit
wheel (nothing is downloaded):

* ``nci``: real compounds, the SMILES of ``rdkit/Data/NCI/first_5K.smi``
  (largest fragment of each entry; only C H N O S F Cl Br P I; no radicals);
* ``brics``: new molecules recombined from BRICS fragments of those compounds
  (``rdkit.Chem.BRICS`` cuts at synthetically sensible bonds; the fragments
  are joined at compatible cut labels, open cuts capped with hydrogen), which
  reach the 30-60 non-H atoms that few NCI entries have;
* ``complex``: a first-row transition metal (Mn Fe Co Ni Cu Zn) with small
  monodentate ligands (halides, NH3, H2O, pyridines, imidazoles, MeCN, NCS,
  PPh3) at the vertices of a tetrahedron, square or octahedron.  RDKit's
  embedding gives metal-ligand distances from 1.8 to 2.4 A for the same bond,
  so complexes are assembled here instead: each ligand is embedded alone and
  its donor atom put at the sum of Cordero et al. (2008) covalent radii from
  the metal (meant to be within about 0.1 A of crystal structures), pointing away
  from it, turned until no atom comes close to another ligand's.

Every molecule is sanitised, gets explicit hydrogens and an ETKDG conformer
(seeded), optionally tidied by MMFF94.  The same seed gives the same molecule.
Hydrogens are kept (they scatter in simulated data) and flagged (they are
never network targets).

rdkit is a training/benchmark extra (``pip install -e .[train]``): it is
imported only when a molecule is made, never by ``p2a.solve``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from libtbx.utils import Sorry

ORGANIC_ELEMENTS = ("C", "H", "N", "O", "S", "F", "Cl", "Br", "P", "I")
SOURCES = ("nci", "brics", "complex")

# Cordero et al., Dalton Trans. 2008, 2832: covalent radii (A); Mn and Fe
# high spin, Co low spin (closer to tetrahedral Co(II)-Cl and Co(III)-N)
COVALENT_RADIUS = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57, "P": 1.07, "S": 1.05,
                   "Cl": 1.02, "Br": 1.20, "I": 1.39, "Mn": 1.61, "Fe": 1.52, "Co": 1.26,
                   "Ni": 1.24, "Cu": 1.32, "Zn": 1.22}
# coordination geometries each metal takes here (common ones in crystal structures)
METAL_GEOMETRIES = {"Mn": ("octahedral",), "Fe": ("octahedral",), "Co": ("tetrahedral", "octahedral"),
                    "Ni": ("square_planar", "octahedral"), "Cu": ("square_planar",),
                    "Zn": ("tetrahedral",)}
# monodentate ligands: SMILES and the index of the donor atom in it
LIGANDS = {"chloride": ("[Cl-]", 0), "bromide": ("[Br-]", 0), "ammine": ("N", 0), "aqua": ("O", 0),
           "pyridine": ("n1ccccc1", 0), "4-methylpyridine": ("n1ccc(C)cc1", 0),
           "imidazole": ("n1cc[nH]c1", 0), "1-methylimidazole": ("n1ccn(C)c1", 0),
           "acetonitrile": ("N#CC", 0), "thiocyanato-N": ("[N-]=C=S", 0),
           "triphenylphosphine": ("P(c1ccccc1)(c1ccccc1)c1ccccc1", 0)}
MAX_BULKY_LIGANDS = 2   # PPh3 per complex: more do not fit round a first-row metal


def vertices(geometry):
  """Unit vectors from the metal to its ligands."""
  if geometry == "tetrahedral":
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    return v / np.sqrt(3.0)
  if geometry == "square_planar":
    return np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=float)
  if geometry == "octahedral":
    return np.vstack([np.eye(3), -np.eye(3)])
  raise Sorry("Unknown coordination geometry %r." % geometry)


@dataclass
class Molecule:
  """One molecule in Cartesian A, centred on the centroid of its non-H atoms.

  Arrays are numpy (sites float (n, 3), elements str (n,), is_hydrogen bool
  (n,)) so that they feed straight into structure building or batched data."""
  sites_cart: np.ndarray
  elements: np.ndarray
  is_hydrogen: np.ndarray
  bonds: np.ndarray                 # (m, 2) atom indices, for checks
  smiles: str
  source: str                       # one of SOURCES
  seed: int
  notes: list = field(default_factory=list)

  @property
  def n_atoms(self):
    """Non-H atoms: what the network draws and what a solution is scored on."""
    return int((~self.is_hydrogen).sum())

  @property
  def non_h_sites(self):
    return self.sites_cart[~self.is_hydrogen]

  @property
  def non_h_elements(self):
    return self.elements[~self.is_hydrogen]

  def u_iso(self, u_non_h, hydrogen_factor=1.2):
    """U_iso per atom: u_non_h for every non-H atom and hydrogen_factor times
    it for hydrogens (riding hydrogens, as SHELX refines them)."""
    return np.where(self.is_hydrogen, hydrogen_factor * u_non_h, u_non_h).astype(float)

  def formula(self, hydrogens=False):
    counts = {}
    for e, h in zip(self.elements, self.is_hydrogen):
      if hydrogens or not h:
        counts[str(e)] = counts.get(str(e), 0) + 1
    order = sorted(counts, key=lambda e: (e != "C", e != "H", e))
    return "".join("%s%d" % (e, counts[e]) for e in order)


# --- rdkit, lazily ----------------------------------------------------------------

def rdkit_modules():
  """(Chem, AllChem, BRICS), or a Sorry saying how to install rdkit."""
  try:
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem, BRICS
  except ImportError:
    raise Sorry("Real molecules need RDKit, a training/benchmark extra: pip install -e .[train] "
                "(or pip install rdkit).")
  RDLogger.DisableLog("rdApp.*")
  return Chem, AllChem, BRICS


def nci_path():
  import rdkit
  path = os.path.join(os.path.dirname(rdkit.__file__), "Data", "NCI", "first_5K.smi")
  if not os.path.isfile(path):
    raise Sorry("The rdkit installation has no %s: reinstall the rdkit wheel from the package "
                "index (it ships the NCI set)." % path)
  return path


_CACHE = {}


def largest_fragment(Chem, mol):
  frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
  return max(frags, key=lambda f: f.GetNumHeavyAtoms())


def usable(mol):
  """Only the elements asked for, no radicals, no isotopes or dummies."""
  for a in mol.GetAtoms():
    if a.GetSymbol() not in ORGANIC_ELEMENTS or a.GetNumRadicalElectrons() or a.GetIsotope():
      return False
  return True


def nci_molecules():
  """SMILES of the usable NCI compounds, and their indices by non-H count."""
  if "nci" not in _CACHE:
    Chem, _, _ = rdkit_modules()
    smiles = []
    with open(nci_path()) as f:
      for line in f:
        parts = line.split()
        mol = Chem.MolFromSmiles(parts[0]) if parts else None
        if mol is None:
          continue  # fails sanitisation (hypervalent atoms and the like)
        mol = largest_fragment(Chem, mol)
        if usable(mol) and mol.GetNumHeavyAtoms() >= 2:
          smiles.append((Chem.MolToSmiles(mol), mol.GetNumHeavyAtoms()))
    by_count = {}
    for i, (_, n) in enumerate(smiles):
      by_count.setdefault(n, []).append(i)
    _CACHE["nci"] = ([s for s, _ in smiles], by_count)
  return _CACHE["nci"]


def brics_fragments(max_molecules=1000):
  """BRICS fragments of the first max_molecules usable NCI compounds:
  [(mol, heavy atoms without cuts, cut labels)], only fragments with cuts.
  About 1 s on one core, once per process."""
  if "brics" not in _CACHE:
    Chem, _, BRICS = rdkit_modules()
    smiles, _ = nci_molecules()
    seen = set()
    for s in smiles[:max_molecules]:
      seen.update(BRICS.BRICSDecompose(Chem.MolFromSmiles(s), keepNonLeafNodes=False))
    fragments = []
    for s in sorted(seen):  # sorted: the same list in every process
      mol = Chem.MolFromSmiles(s)
      if mol is None:
        continue
      labels = [a.GetIsotope() for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
      if labels:
        fragments.append((mol, mol.GetNumHeavyAtoms(), labels))  # dummies are not heavy atoms
    compatible = {}
    for rule in BRICS.reactionDefs:
      for a, b, _ in rule:
        a, b = int(a.rstrip("ab")), int(b.rstrip("ab"))  # 7a/7b: the two ends of label 7
        compatible.setdefault(a, set()).add(b)
        compatible.setdefault(b, set()).add(a)
    _CACHE["brics"] = (fragments, compatible)
  return _CACHE["brics"]


# --- the three sources --------------------------------------------------------------

def cap_cuts(Chem, mol):
  """Replace every remaining BRICS cut (dummy atom) by hydrogen on its neighbour."""
  rw = Chem.RWMol(mol)
  dummies = sorted((a.GetIdx() for a in rw.GetAtoms() if a.GetAtomicNum() == 0), reverse=True)
  for i in dummies:
    for bond in rw.GetAtomWithIdx(i).GetBonds():
      other = bond.GetOtherAtom(rw.GetAtomWithIdx(i))
      other.SetNumExplicitHs(other.GetNumExplicitHs() + int(round(bond.GetBondTypeAsDouble())))
      other.SetNoImplicit(False)
    rw.RemoveAtom(i)
  out = rw.GetMol()
  Chem.SanitizeMol(out)
  return out


def brics_molecule(rng, n_atoms, max_tries=50):
  """A new molecule of exactly n_atoms non-H atoms from BRICS fragments, or None."""
  Chem, _, _ = rdkit_modules()
  fragments, compatible = brics_fragments()
  for _ in range(max_tries):
    fits = [i for i, f in enumerate(fragments) if f[1] <= n_atoms]
    mol = Chem.Mol(fragments[fits[int(rng.integers(len(fits)))]][0])
    size = mol.GetNumHeavyAtoms()
    while size < n_atoms:
      cuts = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
      if not cuts:
        break
      cut = cuts[int(rng.integers(len(cuts)))]
      label = mol.GetAtomWithIdx(cut).GetIsotope()
      partners = [i for i, f in enumerate(fragments) if f[1] <= n_atoms - size
                  and any(l in compatible.get(label, ()) for l in f[2])]
      if not partners:
        break
      frag, frag_size, frag_labels = fragments[partners[int(rng.integers(len(partners)))]]
      frag = Chem.Mol(frag)
      choices = [a.GetIdx() for a in frag.GetAtoms()
                 if a.GetAtomicNum() == 0 and a.GetIsotope() in compatible.get(label, ())]
      mol.GetAtomWithIdx(cut).SetAtomMapNum(1)
      frag.GetAtomWithIdx(choices[int(rng.integers(len(choices)))]).SetAtomMapNum(1)
      try:
        joined = Chem.molzip(mol, frag)
        Chem.SanitizeMol(joined)
      except Exception:  # noqa: BLE001 -- rdkit raises several types for an invalid join
        break
      mol, size = joined, size + frag_size
    if size != n_atoms:
      continue
    try:
      mol = cap_cuts(Chem, mol)
    except Exception:  # noqa: BLE001
      continue
    if mol.GetNumHeavyAtoms() == n_atoms and usable(mol):
      return Chem.MolFromSmiles(Chem.MolToSmiles(mol))
  return None


def embed(mol_with_h, seed, mmff=True, max_attempts=3):
  """ETKDG (v3) conformer with the given seed, MMFF94-tidied when asked and
  parametrised.  Returns positions (n, 3) or None."""
  Chem, AllChem, _ = rdkit_modules()
  ps = AllChem.ETKDGv3()
  ps.randomSeed = int(seed) % (2 ** 31)
  ps.maxIterations = 0
  ps.numThreads = 1
  for attempt in range(max_attempts):
    ps.randomSeed = int(seed + 7919 * attempt) % (2 ** 31)
    try:
      cid = AllChem.EmbedMolecule(mol_with_h, ps)
    except RuntimeError:
      return None  # rdkit cannot build distance bounds for this molecule
    if cid >= 0:
      break
  else:
    return None
  if mmff and AllChem.MMFFHasAllMoleculeParams(mol_with_h):
    AllChem.MMFFOptimizeMolecule(mol_with_h, maxIters=200)
  return mol_with_h.GetConformer().GetPositions()


def from_rdkit(mol, seed, source, mmff=True):
  """Molecule (hydrogens added, embedded, centred) from an rdkit molecule, or None."""
  Chem, _, _ = rdkit_modules()
  mol_h = Chem.AddHs(mol)
  positions = embed(mol_h, seed, mmff=mmff)
  if positions is None:
    return None
  elements = np.array([a.GetSymbol() for a in mol_h.GetAtoms()])
  bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol_h.GetBonds()],
                   dtype=int).reshape(-1, 2)
  return centred(positions, elements, bonds, Chem.MolToSmiles(mol), source, seed)


def centred(positions, elements, bonds, smiles, source, seed):
  is_h = elements == "H"
  positions = positions - positions[~is_h].mean(axis=0)
  return Molecule(sites_cart=positions, elements=elements, is_hydrogen=is_h, bonds=bonds,
                  smiles=smiles, source=source, seed=int(seed))


def random_rotation(rng):
  q = rng.normal(size=4)
  a, b, c, d = q / np.linalg.norm(q)
  return np.array([[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
                   [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
                   [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]])


def rotation_onto(u, v):
  """Rotation matrix taking unit vector u onto unit vector v."""
  w = np.cross(u, v)
  c = float(np.dot(u, v))
  if np.linalg.norm(w) < 1e-8:
    if c > 0:
      return np.eye(3)
    axis = np.cross(u, [1.0, 0, 0] if abs(u[0]) < 0.9 else [0, 1.0, 0])
    axis /= np.linalg.norm(axis)
    return 2 * np.outer(axis, axis) - np.eye(3)
  k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
  return np.eye(3) + k + k @ k / (1 + c)


def ligand_geometry(name, seed, mmff=True):
  """(positions with the donor at the origin and the ligand along +z,
  elements, bonds) of one ligand, embedded alone."""
  Chem, _, _ = rdkit_modules()
  smiles, donor = LIGANDS[name]
  mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
  if mol.GetNumAtoms() == 1:
    pos = np.zeros((1, 3))
  else:
    pos = embed(mol, seed, mmff=mmff)
    if pos is None:
      return None
    pos = pos - pos[donor]
    rest = np.delete(pos, donor, axis=0)
    heavy = [i for i, a in enumerate(mol.GetAtoms()) if a.GetAtomicNum() > 1 and i != donor]
    axis = (pos[heavy] if heavy else rest).mean(axis=0)
    pos = pos @ rotation_onto(axis / np.linalg.norm(axis), np.array([0, 0, 1.0])).T
  elements = np.array([a.GetSymbol() for a in mol.GetAtoms()])
  bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()],
                   dtype=int).reshape(-1, 2)
  return pos, elements, bonds, donor


def ligand_size(name):
  Chem, _, _ = rdkit_modules()
  return Chem.MolFromSmiles(LIGANDS[name][0]).GetNumHeavyAtoms()


def metal_complex(rng, n_atoms, max_tries=200, clash_heavy=2.6, clash_h=2.0, mmff=True):
  """A metal with monodentate ligands, exactly n_atoms non-H atoms, or None."""
  names = sorted(LIGANDS)
  sizes = {name: ligand_size(name) for name in names}
  metals = sorted(METAL_GEOMETRIES)
  for _ in range(max_tries):
    metal = metals[int(rng.integers(len(metals)))]
    geometries = METAL_GEOMETRIES[metal]
    geometry = geometries[int(rng.integers(len(geometries)))]
    directions = vertices(geometry)
    chosen = [names[int(rng.integers(len(names)))] for _ in directions]
    if 1 + sum(sizes[c] for c in chosen) != n_atoms or chosen.count("triphenylphosphine") > \
        MAX_BULKY_LIGANDS:
      continue
    placed = place_ligands(rng, metal, directions, chosen, clash_heavy, clash_h, mmff)
    if placed is not None:
      return placed
  return None


def place_ligands(rng, metal, directions, chosen, clash_heavy, clash_h, mmff, spins=30):
  """Put each ligand's donor at the metal-donor bond length along its
  direction, turned about it until it clashes with no ligand placed before."""
  positions, elements, bonds = [np.zeros((1, 3))], [np.array([metal])], []
  n = 1
  for direction, name in zip(directions, chosen):
    geometry = ligand_geometry(name, int(rng.integers(2 ** 31)), mmff=mmff)
    if geometry is None:
      return None
    pos, els, lig_bonds, donor = geometry
    distance = COVALENT_RADIUS[metal] + COVALENT_RADIUS[str(els[donor])] + rng.uniform(-0.03, 0.03)
    onto = rotation_onto(np.array([0, 0, 1.0]), direction)
    placed_before = np.vstack(positions)
    is_h_before = np.concatenate(elements) == "H"
    for _ in range(spins):
      angle = rng.uniform(0, 2 * np.pi)
      spin = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
      trial = (pos @ spin.T) @ onto.T + distance * direction
      d = np.linalg.norm(trial[:, None] - placed_before[None], axis=-1)
      d[donor, 0] = np.inf  # the metal-donor bond
      h_pair = (els == "H")[:, None] | is_h_before[None]
      if np.all(d[h_pair] >= clash_h) and np.all(d[~h_pair] >= clash_heavy):
        break
    else:
      return None
    positions.append(trial)
    elements.append(els)
    bonds.append(lig_bonds + n)
    bonds.append(np.array([[0, n + donor]]))
    n += len(els)
  smiles = "[%s](%s)" % (metal, ")(".join(LIGANDS[c][0] for c in chosen))
  mol = centred(np.vstack(positions), np.concatenate(elements), np.vstack(bonds), smiles, "complex",
                0)
  mol.notes.append("%s, %d ligands: %s" % (metal, len(chosen), ", ".join(chosen)))
  return mol


# --- the generator --------------------------------------------------------------------

def generate(seed, n_atoms=(6, 60), source_weights=(0.5, 0.4, 0.1), mmff=True, max_tries=20):
  """A seeded molecule with a non-H atom count drawn uniformly from n_atoms
  (lo, hi).  source_weights: probabilities of nci, brics and complex; a
  source with no molecule of the drawn count hands over to the next one
  (nci -> brics -> complex -> nci).  The same seed always gives the same
  molecule."""
  lo, hi = (list(n_atoms) * 2)[:2]
  if lo < 2 or hi < lo:
    raise Sorry("molecules need a non-H atom range like n_atoms='6 60' (got %s)." % (n_atoms,))
  weights = np.asarray(source_weights, dtype=float)
  if weights.shape != (3,) or weights.min() < 0 or weights.sum() <= 0:
    raise Sorry("source_weights: three non-negative numbers for nci, brics and complex "
                "(got %s)." % (source_weights,))
  Chem, _, _ = rdkit_modules()
  rng = np.random.default_rng([int(seed), 11])
  for attempt in range(max_tries):
    n = int(rng.integers(lo, hi + 1))
    first = int(rng.choice(3, p=weights / weights.sum()))
    embed_seed = int(rng.integers(2 ** 31))
    for k in range(3):
      source = SOURCES[(first + k) % 3]
      if weights[SOURCES.index(source)] == 0:
        continue
      mol = None
      if source == "nci":
        smiles, by_count = nci_molecules()
        if by_count.get(n):
          pick = smiles[by_count[n][int(rng.integers(len(by_count[n])))]]
          mol = from_rdkit(Chem.MolFromSmiles(pick), embed_seed, "nci", mmff=mmff)
      elif source == "brics":
        built = brics_molecule(rng, n)
        if built is not None:
          mol = from_rdkit(built, embed_seed, "brics", mmff=mmff)
      else:
        mol = metal_complex(rng, n, mmff=mmff)
      if mol is not None and mol.n_atoms == n:
        mol.seed = int(seed)
        if attempt:
          mol.notes.append("%d draws before this one failed to embed" % attempt)
        return mol
  raise Sorry("No molecule with %d-%d non-H atoms after %d draws (seed %d): widen n_atoms."
              % (lo, hi, max_tries, seed))

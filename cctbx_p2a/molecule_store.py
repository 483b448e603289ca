"""A store of real molecules made once with RDKit, read where RDKit is not.

Why: making one molecule (`cctbx_p2a.molecules`, ETKDG + MMFF) takes
60-800 ms (docs/molecules.md), slower than the network step it feeds, and
the GPU machines lent to some sessions have no RDKit.  A store made here
once (molecules with their hydrogens, centred on their non-H atoms) serves
any number of examples there: each draw picks a stored molecule of the
asked size and turns it at random, and the cell, U, noise, d_min and
completeness are drawn per example as for generated molecules.  What a
store cannot give is new chemistry: a network trained on it sees only its
molecules (the card records how many), so it should hold many.

    python -m cctbx_p2a.molecule_store training/molecules.npz --seeds 0:5000
    python -m cctbx_p2a.molecule_store training/molecules.npz --from-crystals training/crystals.npz

Training uses it with synthetic.molecule_source=store and
synthetic.molecule_store=PATH (phil/synthetic.phil).
"""
import argparse
import os
import sys
import time

import numpy as np
from libtbx.utils import Sorry

STORE_FIELDS = ("seeds", "offsets", "sites_cart", "elements", "is_h", "sources")
_LOADED = {}


class MoleculeStore:
  """Molecules (cctbx_p2a.molecules.Molecule) in one compressed .npz."""

  def __init__(self, molecules, path=None):
    self.molecules = list(molecules)
    self.path = path
    self.n_heavy = np.array([m.n_atoms for m in self.molecules], dtype=int)

  def __len__(self):
    return len(self.molecules)

  def save(self, path):
    """Atomically (temp file + rename): a kill never leaves a broken store."""
    from cctbx_p2a.crystal_data import atom_arrays, save_store
    ms = self.molecules
    save_store(path, dict(
      atom_arrays([m.sites_cart for m in ms], [m.elements for m in ms], [m.is_hydrogen for m in ms],
                  sites_name="sites_cart"),
      seeds=np.array([m.seed for m in ms], dtype=np.int64),
      sources=np.array([m.source for m in ms], dtype=str)))
    self.path = path

  @classmethod
  def load(cls, path):
    """The store at path, read once per process."""
    from cctbx_p2a.crystal_data import read_store
    from cctbx_p2a.molecules import Molecule
    key = os.path.abspath(path)
    if key in _LOADED:
      return _LOADED[key]
    z = read_store(path, STORE_FIELDS, "molecule store", "make one with python -m cctbx_p2a.molecule_store "
                   "%s --seeds 0:5000 (needs pip install -e .[train])" % path)
    off, seeds, sources, elements, is_h = (z[f] for f in ("offsets", "seeds", "sources", "elements", "is_h"))
    sites = z["sites_cart"].astype(np.float64)
    molecules = [Molecule(sites_cart=sites[off[i]:off[i + 1]], elements=elements[off[i]:off[i + 1]],
                          is_hydrogen=is_h[off[i]:off[i + 1]], bonds=np.zeros((0, 2), int),
                          smiles="", source=str(sources[i]), seed=int(seeds[i]))
                 for i in range(len(seeds))]
    store = _LOADED[key] = cls(molecules, path)
    return store

  def draw(self, seed, n_atoms):
    """A stored molecule with lo-hi non-H atoms (n_atoms), turned at random:
    the same seed gives the same molecule in the same orientation."""
    from cctbx_p2a.molecules import Molecule, random_rotation
    lo, hi = (list(n_atoms) * 2)[:2]
    fits = np.flatnonzero((self.n_heavy >= lo) & (self.n_heavy <= hi))
    if fits.size == 0:
      raise Sorry("The molecule store %s holds no molecule with %d-%d non-H atoms (it holds %d-%d): "
                  "widen synthetic.n_atoms or make a store that does." % (
                    self.path, lo, hi, *self.size_range()))
    rng = np.random.default_rng([int(seed), 13])
    m = self.molecules[int(fits[rng.integers(fits.size)])]
    turn = random_rotation(rng)
    return Molecule(sites_cart=m.sites_cart @ turn.T, elements=m.elements, is_hydrogen=m.is_hydrogen,
                    bonds=m.bonds, smiles=m.smiles, source=m.source, seed=m.seed)

  def size_range(self):
    """(fewest, most) non-H atoms of a stored molecule; (0, 0) when empty."""
    return (int(self.n_heavy.min()), int(self.n_heavy.max())) if len(self) else (0, 0)

  def summary(self):
    counts = {}
    for m in self.molecules:
      counts[m.source] = counts.get(m.source, 0) + 1
    return dict(molecules=len(self), non_h_atoms=list(self.size_range()),
                median_non_h_atoms=float(np.median(self.n_heavy)) if len(self) else None, sources=counts)


def case_molecule(params, seed, n_atoms):
  """The molecule of a synthetic case (synthetic.molecule_source molecules
  or store): one seed, drawn the same way on both data paths."""
  if params.molecule_source == "store":
    if not params.molecule_store:
      raise Sorry("synthetic.molecule_source=store needs synthetic.molecule_store=PATH (a store made "
                  "by python -m cctbx_p2a.molecule_store).")
    return MoleculeStore.load(params.molecule_store).draw(seed, n_atoms)
  from cctbx_p2a import molecules
  return molecules.generate(seed, n_atoms=n_atoms, source_weights=params.molecule_sources, mmff=params.mmff)


def build(path, seeds, n_atoms=(6, 60), source_weights=(0.5, 0.4, 0.1), mmff=True, max_minutes=None,
          save_every=200, log=sys.stdout):
  """Generate molecules for seeds into the store at path, resuming a store
  that is there (its seeds are skipped); saved every save_every molecules
  and at the end, so a kill loses at most that many."""
  from cctbx_p2a import molecules
  store = MoleculeStore.load(path) if os.path.isfile(path) else MoleculeStore([], path)
  done = {m.seed for m in store.molecules}
  t0, made = time.time(), 0
  for seed in seeds:
    if seed in done:
      continue
    if max_minutes and time.time() - t0 > 60 * max_minutes:
      print("stopped after %.1f min (max_minutes)" % ((time.time() - t0) / 60), file=log)
      break
    try:
      store.molecules.append(molecules.generate(seed, n_atoms=n_atoms, source_weights=source_weights,
                                                mmff=mmff))
    except Sorry as e:
      print("seed %d: %s" % (seed, e), file=log)
      continue
    made += 1
    if made % save_every == 0:
      MoleculeStore(store.molecules).save(path)
      print("%d molecules (%d new, %.0f s)" % (len(store.molecules), made, time.time() - t0), file=log,
            flush=True)
  store = MoleculeStore(sorted(store.molecules, key=lambda m: m.seed))
  store.save(path)
  _LOADED.pop(os.path.abspath(path), None)
  return store


def from_crystal_store(crystal_path, path):
  """The molecules of a crystal store (cctbx_p2a.crystal_data: one molecule
  per asymmetric unit, hydrogens included), as a molecule store: Cartesian,
  centred on the non-H atoms, source 'crystal store'."""
  from cctbx import uctbx
  from cctbx_p2a.crystal_data import CrystalStore
  from cctbx_p2a.molecules import centred
  out = []
  for c in CrystalStore.load(crystal_path).crystals:
    orth = np.array(uctbx.unit_cell(c.cell).orthogonalization_matrix()).reshape(3, 3)
    out.append(centred(c.sites_frac @ orth.T, np.array(c.elements), np.zeros((0, 2), int), "",
                       "crystal store", c.seed))
  store = MoleculeStore(out)
  store.save(path)
  _LOADED.pop(os.path.abspath(path), None)
  return store


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("path")
  ap.add_argument("--seeds", help="first:last (last excluded), e.g. 0:5000")
  ap.add_argument("--n-atoms", default="6,60", help="non-H atoms, lo,hi (default 6,60)")
  ap.add_argument("--max-minutes", type=float, default=None)
  ap.add_argument("--from-crystals", help="a crystal store (.npz) whose molecules to take instead")
  args = ap.parse_args(argv)
  if args.from_crystals:
    store = from_crystal_store(args.from_crystals, args.path)
  elif args.seeds:
    first, last = (int(v) for v in args.seeds.split(":"))
    lo, hi = (int(v) for v in args.n_atoms.split(","))
    store = build(args.path, range(first, last), n_atoms=(lo, hi), max_minutes=args.max_minutes)
  else:
    raise Sorry("Give --seeds first:last or --from-crystals STORE.")
  print(store.summary())


if __name__ == "__main__":
  import cctbx_p2a  # noqa: F401  (import order)
  main()

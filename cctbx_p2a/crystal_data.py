"""Training data for the crystal network (issue 14, route a2): packed
crystals stored once, observed many times.

Packing a crystal (cctbx_p2a.packing) costs seconds; making its Patterson
window costs about 10 ms (docs/crystals_network.md).  So crystals are packed
once into a *store* (one .npz: cells, space groups, the asymmetric units with
their hydrogens) and every training example draws a stored crystal and new
observation conditions -- U_iso, d_min, noise, completeness -- from its own
seed.  The store is built in chunks (``pack_store`` skips the seeds it holds
and saves atomically), so it grows across sessions like a checkpoint.

The target (route a2) is the molecule, centred on the centroid of its non-H
atoms, in one orientation picked from its Laue-group copies by a fixed rule
(``canonical_rotation``).  The Patterson is the same for every copy, so a
target that were any copy would be ambiguous (the paper's key finding); the
rule makes it a function of the input except near the rule's boundary, where
``canonical_margin`` is small.  The read-out does not care which copy comes
back: cctbx_p2a.placement tries every Laue orientation.

Only training imports this module (packing needs PyXtal and RDKit, the
``[train]`` extra); a stored crystal needs neither.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from libtbx.utils import Sorry

# a fixed, generic direction: the canonical copy is the one whose skew vector
# points most along it (any direction off the symmetry elements would do)
CANONICAL_DIRECTION = np.array([0.8, 0.5, 0.33]) / np.linalg.norm([0.8, 0.5, 0.33])

STORE_FIELDS = ("seeds", "hall", "cells", "offsets", "sites_frac", "elements", "is_h", "failed_seeds")


@dataclass
class StoredCrystal:
  seed: int
  hall: str
  cell: tuple
  sites_frac: np.ndarray   # (N, 3) asymmetric unit, hydrogens included
  elements: list
  is_hydrogen: np.ndarray

  def crystal_symmetry(self):
    from cctbx import crystal, sgtbx
    return crystal.symmetry(unit_cell=self.cell, space_group_info=sgtbx.space_group_info(
      group=sgtbx.space_group(self.hall)))

  def orthogonalisation(self):
    from cctbx import uctbx
    from cctbx_p2a import placement
    return placement.orthogonalisation(uctbx.unit_cell(self.cell))

  def p1_sites_cart(self):
    """(sites_cart, elements, is_hydrogen) of the whole unit cell, every atom
    inside it; the Patterson is periodic, so where in the cell does not matter."""
    from cctbx import sgtbx
    group = sgtbx.space_group(self.hall)
    frac = []
    for op in group.all_ops():
      r = np.array(op.r().as_double()).reshape(3, 3)
      t = np.array(op.t().as_double())
      frac.append(self.sites_frac @ r.T + t)
    frac = np.concatenate(frac)
    frac -= np.floor(frac)
    n = group.order_z()
    return frac @ self.orthogonalisation().T, list(self.elements) * n, np.tile(self.is_hydrogen, n)

  def xray_structure(self, u_iso=0.03, hydrogen_u_factor=1.2, hydrogens=True):
    """The asymmetric unit as a cctbx xray.structure in its space group."""
    from cctbx import xray
    from cctbx.array_family import flex
    keep = [i for i in range(len(self.elements)) if hydrogens or not self.is_hydrogen[i]]
    scatterers = flex.xray_scatterer([
      xray.scatterer(label="%s%d" % (self.elements[i], i + 1), site=tuple(self.sites_frac[i]),
                     u=u_iso * (hydrogen_u_factor if self.is_hydrogen[i] else 1.0),
                     scattering_type=self.elements[i]) for i in keep])
    return xray.structure(crystal_symmetry=self.crystal_symmetry(), scatterers=scatterers)

  def image(self):
    """(non-H sites centred on their centroid in the orthogonal frame, elements)."""
    cart = self.sites_frac[~self.is_hydrogen] @ self.orthogonalisation().T
    return cart - cart.mean(axis=0), [e for e, h in zip(self.elements, self.is_hydrogen) if not h]


class CrystalStore:
  """The crystals of one store file, in seed order."""

  def __init__(self, crystals, failed_seeds=(), path=None):
    self.crystals = list(crystals)
    self.failed_seeds = sorted(set(int(s) for s in failed_seeds))
    self.path = path

  def __len__(self):
    return len(self.crystals)

  def seeds(self):
    return {c.seed for c in self.crystals} | set(self.failed_seeds)

  @classmethod
  def merged(cls, stores):
    """One store of several packed in parallel (disjoint seed ranges, one
    process each); a seed held twice is a mistake and is refused."""
    crystals, failed, seen = [], [], set()
    for store in stores:
      for c in store.crystals:
        if c.seed in seen:
          raise Sorry("Seed %d is in two of the stores to merge (%s): pack disjoint seed ranges." % (
            c.seed, store.path))
        seen.add(c.seed)
        crystals.append(c)
      failed += store.failed_seeds
    return cls(sorted(crystals, key=lambda c: c.seed), failed)

  def save(self, path):
    """Atomically (temp file + rename): a kill never leaves a broken store."""
    save_store(path, dict(
      atom_arrays([c.sites_frac for c in self.crystals], [c.elements for c in self.crystals],
                  [c.is_hydrogen for c in self.crystals], sites_name="sites_frac"),
      seeds=np.array([c.seed for c in self.crystals], dtype=np.int64),
      hall=np.array([c.hall for c in self.crystals], dtype=str),
      cells=np.array([c.cell for c in self.crystals], dtype=np.float64).reshape(-1, 6),
      failed_seeds=np.array(self.failed_seeds, dtype=np.int64)))
    self.path = path

  @classmethod
  def load(cls, path):
    z = read_store(path, STORE_FIELDS, "crystal store",
                   "build one with python -m cctbx_p2a.crystal_data %s --seeds 0:1000" % path)
    off, seeds, hall, cells, is_h = (z[f] for f in ("offsets", "seeds", "hall", "cells", "is_h"))
    sites = z["sites_frac"].astype(np.float64)
    elements = z["elements"].tolist()
    failed = z["failed_seeds"]
    crystals = [StoredCrystal(seed=int(seeds[i]), hall=str(hall[i]), cell=tuple(float(v) for v in cells[i]),
                              sites_frac=sites[off[i]:off[i + 1]], elements=elements[off[i]:off[i + 1]],
                              is_hydrogen=is_h[off[i]:off[i + 1]].copy())
                for i in range(len(seeds))]
    return cls(sorted(crystals, key=lambda c: c.seed), failed.tolist(), path)


def atom_arrays(sites, elements, is_hydrogen, sites_name):
  """The atoms of many molecules as flat arrays plus offsets (molecule i is
  rows offsets[i]:offsets[i + 1]): what a crystal or molecule store saves."""
  return {"offsets": np.cumsum([0] + [len(e) for e in elements]).astype(np.int64),
          sites_name: np.concatenate(sites).astype(np.float32) if sites else np.zeros((0, 3), np.float32),
          "elements": np.array([str(e) for es in elements for e in es], dtype=str),
          "is_h": np.concatenate(is_hydrogen).astype(bool) if is_hydrogen else np.zeros(0, bool)}


def save_store(path, arrays):
  """np.savez_compressed atomically (temp file + rename): a kill never leaves
  a broken store."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, ".%s.tmp.npz" % os.path.basename(path))
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def read_store(path, fields, what, how_to_make):
  """The arrays of a store .npz, each read once (every z[name] decompresses
  the whole array: indexed inside a loop over 3,780 crystals it took 89 s),
  or a Sorry that says what is missing and how to make one."""
  if not os.path.isfile(path):
    raise Sorry("No %s at %s: %s." % (what, path, how_to_make))
  with np.load(path) as z:
    missing = [f for f in fields if f not in z.files]
    if missing:
      raise Sorry("%s is not a %s (missing %s)." % (path, what, ", ".join(missing)))
    return {f: z[f] for f in fields}


def stored(packed):
  """A StoredCrystal of a cctbx_p2a.packing.PackedCrystal."""
  return from_structure(packed.xray_structure, packed.seed, packed.is_hydrogen)


def from_structure(xray_structure, seed, is_hydrogen=None):
  """A StoredCrystal of any xray.structure whose asymmetric unit is one
  molecule (a published crystal, for tests and checks)."""
  xs = xray_structure
  types = [s.scattering_type for s in xs.scatterers()]
  is_h = np.array([t in ("H", "D") for t in types]) if is_hydrogen is None else is_hydrogen
  return StoredCrystal(seed=int(seed), hall=xs.space_group().type().hall_symbol(),
                       cell=tuple(xs.unit_cell().parameters()), sites_frac=np.array(xs.sites_frac()),
                       elements=types, is_hydrogen=np.asarray(is_h, dtype=bool))


def pack_store(path, seeds, params=None, max_minutes=None, save_every=20, log=None):
  """Add the crystals of `seeds` (packing.generate) to the store at `path`,
  skipping seeds it holds; saves every save_every crystals and at the end,
  stops cleanly after max_minutes, or after the crystal in hand on SIGTERM
  or SIGINT (Slurm's warning, kill, Ctrl-C: a job started in the background
  ignores Ctrl-C's SIGINT, so SIGTERM is what reaches it).  Seeds that will
  not pack are recorded so a rerun does not retry them.  Returns the store."""
  from cctbx_p2a import packing
  from cctbx_p2a.train import StopRequest
  store = CrystalStore.load(path) if os.path.isfile(path) else CrystalStore([])
  done, t0, added = store.seeds(), time.time(), 0
  with StopRequest() as stop:
    for seed in seeds:
      if stop.signal is not None:
        if log:
          print("signal %d: saving %d crystals" % (stop.signal, len(store)), file=log, flush=True)
        break
      if seed in done:
        continue
      if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
        break
      try:
        store.crystals.append(stored(packing.generate(seed, params)))
      except Sorry as e:
        store.failed_seeds.append(int(seed))
        if log:
          print("seed %d: %s" % (seed, str(e)[:120]), file=log, flush=True)
      added += 1
      if added % save_every == 0:
        store.save(path)
        if log:
          print("%d crystals (%d failed) after %.0f s" % (len(store), len(store.failed_seeds),
                                                          time.time() - t0), file=log, flush=True)
  store.crystals.sort(key=lambda c: c.seed)
  store.save(path)
  return store


# --------------------------------------------------------------------------
# the target: one Laue copy of the molecule, chosen by a fixed rule

def skew_vector(sites, weights):
  """sum_i w_i |x_i|^2 x_i over sites centred on their centroid: a vector
  that turns with the molecule and, unlike the first moment, is not zero."""
  sites = np.asarray(sites, dtype=float)
  w = np.asarray(weights, dtype=float)
  return ((w * (sites ** 2).sum(axis=1))[:, None] * sites).sum(axis=0)


def canonical_rotation(sites, weights, rotations):
  """(rotation, margin): the Laue rotation g (Cartesian) whose copy g.M has
  its skew vector most along CANONICAL_DIRECTION, and how far the runner-up
  trails (as a fraction of |skew|; near 0 the choice is ambiguous)."""
  v = skew_vector(sites, weights)
  norm = np.linalg.norm(v)
  scores = np.array([CANONICAL_DIRECTION @ (np.asarray(r) @ v) for r in rotations])
  order = np.argsort(-scores)
  margin = (scores[order[0]] - scores[order[1]]) / norm if len(scores) > 1 and norm > 0 else 1.0
  return np.asarray(rotations[order[0]]), float(margin)


def scattering_weights(elements):
  from cctbx_p2a import batch_data
  weights = []
  for e in elements:
    a, _, c = batch_data.form_factor_gaussian(e)
    weights.append(float(a.sum() + c))   # f at sin(theta)/lambda = 0: about the electrons
  return weights


def canonical_image(crystal):
  """(sites, elements, margin): the crystal's molecule (non-H), centred, in
  its canonical Laue orientation -- the network's target."""
  from cctbx_p2a import placement
  sites, elements = crystal.image()
  rotation, margin = canonical_rotation(sites, scattering_weights(elements),
                                        placement.laue_rotations(crystal.crystal_symmetry()))
  return sites @ rotation.T, elements, margin


# --------------------------------------------------------------------------
# examples

@dataclass
class DrawnCrystalCase:
  crystal: StoredCrystal
  u_iso: float
  d_min: float
  noise: float
  completeness: float
  rng: np.random.Generator


def draw_crystal_case(seed, store, synthetic_params):
  """A stored crystal and observation conditions (synthetic scope's u_iso,
  d_min, noise, completeness ranges), all from one example seed."""
  from cctbx_p2a import synthetic
  rng = np.random.default_rng(seed)
  crystal = store.crystals[int(rng.integers(len(store)))]
  return DrawnCrystalCase(crystal=crystal, u_iso=synthetic.draw(rng, synthetic_params.u_iso),
                          d_min=synthetic.draw(rng, synthetic_params.d_min),
                          noise=synthetic.draw(rng, synthetic_params.noise),
                          completeness=synthetic.draw(rng, synthetic_params.completeness), rng=rng)


def training_batch(seeds, store, params, input_grid, output_grid, device="cpu"):
  """(inputs (B, 1, n_in^3), targets (B, 1, n_out^3)): the Patterson windows
  of stored crystals (whole cell, hydrogens scattering at
  synthetic.hydrogen_u_factor x U) and their canonical molecule images."""
  from cctbx import uctbx
  from cctbx_p2a import batch_data
  batch_data.check_supported(params.patterson)
  cases = [draw_crystal_case(seed, store, params.synthetic) for seed in seeds]
  molecules, cells, targets = [], [], []
  for c in cases:
    sites, elements, is_h = c.crystal.p1_sites_cart()
    u = np.where(is_h, c.u_iso * params.synthetic.hydrogen_u_factor, c.u_iso)
    molecules.append(batch_data.Molecule.of(sites, elements, u))
    cells.append(uctbx.unit_cell(c.crystal.cell))
    targets.append(canonical_image(c.crystal)[0])
  x = batch_data.model_inputs(molecules, cells, [c.d_min for c in cases], input_grid,
                              [c.rng for c in cases], noise=[c.noise for c in cases],
                              completeness=[c.completeness for c in cases],
                              observation=params.synthetic.observation,
                              input_d_min=params.patterson.input_d_min,
                              resolution_factor=params.patterson.resolution_factor, device=device)
  y = batch_data.target_grids(targets, output_grid, sigma=params.target.sigma, inverses=False,
                              device=device)
  return x[:, None], y[:, None]


# --------------------------------------------------------------------------
# the training run's view of a store

_SPLITS = {}


def training_split(train_params, held_out=False):
  """The crystals a run trains on (held_out=False) or validates and is
  evaluated on (True): the first train.crystal_count crystals of the store,
  split by seed (a multiple of train.crystal_holdout is held out)."""
  t = train_params
  key = (os.path.abspath(t.crystal_store), t.crystal_count, t.crystal_holdout, held_out)
  if key not in _SPLITS:
    store = CrystalStore.load(t.crystal_store)
    crystals = store.crystals[:t.crystal_count] if t.crystal_count else store.crystals
    if t.crystal_count and len(store) < t.crystal_count:
      raise Sorry("%s holds %d crystals, fewer than train.crystal_count=%d." % (
        t.crystal_store, len(store), t.crystal_count))
    every = max(1, int(t.crystal_holdout))
    chosen = [c for c in crystals if (c.seed % every == 0) == held_out]
    if not chosen:
      raise Sorry("No %s crystals in %s (%d crystals, holdout every %d seeds): pack more." % (
        "held-out" if held_out else "training", t.crystal_store, len(crystals), every))
    _SPLITS[key] = CrystalStore(chosen, path=t.crystal_store)
  return _SPLITS[key]


def check_training_store(params):
  """Refuse settings the crystal network cannot use; returns what the model
  card records about the store."""
  from cctbx_p2a import model_files
  t = params.train
  if params.target.inverses:
    raise Sorry("The crystal network's target is one copy of the molecule: set target.inverses=False "
                "with train.crystal_store.")
  full = CrystalStore.load(t.crystal_store)
  count = t.crystal_count or len(full)
  train_set, held_out = training_split(t), training_split(t, held_out=True)
  groups = sorted({str(c.crystal_symmetry().space_group_info()) for c in full.crystals[:count]})
  n_non_h = [int((~c.is_hydrogen).sum()) for c in full.crystals[:count]]
  return {"crystal_count": count, "path": os.path.basename(t.crystal_store),
          "sha256": model_files.sha256_of(t.crystal_store),
          "training_crystals": len(train_set), "held_out_crystals": len(held_out),
          "space_groups": groups, "n_non_h": [min(n_non_h), max(n_non_h)],
          "summary": "Crystal store %s: first %d crystals, %d for training, %d held out (seed multiple of "
                     "%d); %d space groups, %d-%d non-H atoms" % (
                       t.crystal_store, count, len(train_set), len(held_out), t.crystal_holdout,
                       len(groups), min(n_non_h), max(n_non_h))}


def card_for_crystals(card, info):
  """Turn a model card written by p2a.train into a crystal network's card."""
  card["target"]["kind"] = "canonical Laue copy of the molecule (cctbx_p2a.crystal_data)"
  card["training_data"]["crystal_store"] = {k: v for k, v in info.items() if k != "summary"}
  card["training_data"]["crystal_store"]["packing"] = "cctbx_p2a.packing defaults (phil/packing.phil)"
  card["domain"]["space_groups"] = info["space_groups"]
  card["domain"]["n_atoms"] = info["n_non_h"]
  from cctbx_p2a import molecules
  card["domain"]["molecule_source"] = "packed crystals"
  card["domain"]["elements"] = sorted(set(molecules.ORGANIC_ELEMENTS) | set(molecules.METAL_GEOMETRIES))
  for key in ("cell_edges_A", "cell_angles_deg", "molecule_extent_A"):
    card["domain"].pop(key, None)
  return card


def score_image(target, atom_map, voxel, rotations, threshold=0.1):
  """The map's peaks against the canonical target, and against the best of
  the target's Laue copies (a map that draws another copy is still usable by
  the read-out, which tries them all)."""
  from cctbx_p2a import evaluation
  canonical = evaluation.score_read_out(target, atom_map, voxel, threshold=threshold, inverses=False)
  copies = [evaluation.score_read_out(target @ np.asarray(r).T, atom_map, voxel, threshold=threshold,
                                      inverses=False) for r in rotations]
  best = max(copies, key=lambda c: (np.mean(c["distances"] <= 1.0), -np.mean(
    np.where(np.isfinite(c["distances"]), c["distances"], 9.0))))
  return canonical, best


def evaluate_network(model, params, n_cases, log=None, stream=None, seed=None):
  """Raw read-out of a crystal network on held-out crystals (the evaluation
  stream): the paper's metrics against the canonical image, and against the
  best Laue copy."""
  import sys
  from cctbx_p2a import evaluation, placement, train
  log = log or sys.stdout
  stream = train.EVALUATION_STREAM if stream is None else stream
  seed = params.train.seed if seed is None else seed
  store = training_split(params.train, held_out=True)
  geometry = train.Geometry(params)
  canonical, best, times, margins = [], [], [], []
  for k in range(n_cases):
    example = train.example_seed(seed, stream, k)
    x, _ = training_batch([example], store, params, geometry.input, geometry.output)
    case = draw_crystal_case(example, store, params.synthetic)
    target, _, margin = canonical_image(case.crystal)
    t0 = time.time()
    y = model.predict(x[0, 0].numpy())
    times.append(time.time() - t0)
    c, b = score_image(target, y, model.output_voxel,
                       placement.laue_rotations(case.crystal.crystal_symmetry()))
    canonical.append(c)
    best.append(b)
    margins.append(margin)
  result = evaluation.summarise(canonical, times)
  result["best_laue_copy"] = evaluation.summarise(best, times)
  result["canonical_margin_median"] = float(np.median(margins)) if margins else None
  print("Evaluation on %d held-out crystal cases: canonical copy: mean error %s A, atoms within 0.5 A "
        "%.3f, within 1.0 A %.3f, peaks within 1 A of an atom %.3f; best Laue copy: within 1.0 A %.3f" % (
          result["cases"], "%.3f" % result["mean_error_A"] if result["mean_error_A"] is not None else "n/a",
          result["atoms_within_0.5A"], result["atoms_within_1.0A"], result["peak_precision"],
          result["best_laue_copy"]["atoms_within_1.0A"]), file=log)
  return result


def parse_seeds(text):
  """'0:1000' -> range(0, 1000); '5' -> [5]."""
  if ":" in text:
    a, b = text.split(":")
    return range(int(a), int(b))
  return [int(text)]


def main(argv=None):
  """python -m cctbx_p2a.crystal_data STORE.npz --seeds A:B [--minutes M]
  python -m cctbx_p2a.crystal_data STORE.npz --merge PART1.npz PART2.npz ...

  Pack with one process per core on disjoint seed ranges, then merge."""
  import argparse
  import sys
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("store")
  parser.add_argument("--seeds", default="0:100")
  parser.add_argument("--minutes", type=float, default=None)
  parser.add_argument("--merge", nargs="+", default=None, help="write STORE as the union of these stores")
  args = parser.parse_args(argv)
  t0 = time.time()
  if args.merge:
    store = CrystalStore.merged([CrystalStore.load(p) for p in args.merge])
    store.save(args.store)
    print("%s: %d crystals, %d failed seeds, from %d stores" % (
      args.store, len(store), len(store.failed_seeds), len(args.merge)))
    return
  store = pack_store(args.store, parse_seeds(args.seeds), max_minutes=args.minutes, log=sys.stdout)
  print("%s: %d crystals, %d failed seeds (%.0f s)" % (args.store, len(store), len(store.failed_seeds),
                                                      time.time() - t0))


if __name__ == "__main__":
  main()

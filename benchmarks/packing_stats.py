"""Packed training crystals (cctbx_p2a.packing): time per crystal, density and
closest contacts, per space group.

    python benchmarks/packing_stats.py [crystals_per_group] [first_seed] [--pyxtal-only VOLUME]

Prints one markdown row per space group (docs/crystals_network.md).  With
--pyxtal-only, PyXtal alone packs the same molecules at VOLUME A^3 per non-H
atom (no squeeze, no contact check): what PyXtal gives without packing.py.
"""
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a import packing


def pyxtal_only(seed, params, volume):
  """PyXtal's own packing of generate()'s first molecule at `volume`, checked
  like packing.pack checks its crystals: (time, non-H contact, H contact, atoms)."""
  from cctbx_p2a import molecules
  p = params.packing
  rng = np.random.default_rng([int(seed), 29])
  molecule = molecules.generate(int(rng.integers(2 ** 31)), n_atoms=tuple(p.n_atoms),
                                source_weights=tuple(p.source_weights))
  t0 = time.time()
  symmetry, frac, _ = packing.pyxtal_start(molecule, packing.SPACE_GROUPS[p.space_groups[0]], volume,
                                           np.random.default_rng(seed), p.max_tries)
  seconds = time.time() - t0
  xs = packing.structure_in_best_cell(symmetry, molecule, frac, 0.03)
  heavy, with_h = packing.intermolecular_contacts(xs, np.asarray(molecule.is_hydrogen))
  return seconds, heavy, with_h, molecule.n_atoms


def main_pyxtal_only(n, first, volume):
  params = packing.default_params()
  print("| space group | crystals | PyXtal s/crystal (median, max) | non-H atoms | closest non-H contact "
        "(min, median) | closest contact with H (min, median) |")
  print("|---|---|---|---|---|---|")
  for group in packing.SPACE_GROUPS:
    params.packing.space_groups = [group]
    rows = []
    for k in range(n):
      try:
        rows.append(pyxtal_only(first + k, params, volume))
      except Sorry as e:
        print("  %s seed %d: %s" % (group, first + k, e), file=sys.stderr)
    t, heavy, light, atoms = [np.array(c) for c in zip(*rows)]
    print("| %s | %d | %.1f, %.1f | %d-%d | %.2f, %.2f | %.2f, %.2f |" % (
      group, len(rows), np.median(t), t.max(), atoms.min(), atoms.max(), heavy.min(), np.median(heavy),
      light.min(), np.median(light)), flush=True)


def main():
  if "--pyxtal-only" in sys.argv:
    i = sys.argv.index("--pyxtal-only")
    volume = float(sys.argv[i + 1])
    del sys.argv[i:i + 2]
  else:
    volume = None
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
  first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
  if volume is not None:
    return main_pyxtal_only(n, first, volume)
  params = packing.default_params()
  rows = []
  print("| space group | crystals | failed seeds | s/crystal (median, max) | non-H atoms | A^3 per non-H atom "
        "(min-max) | closest non-H contact (min, median) | closest contact with H (min, median) |")
  print("|---|---|---|---|---|---|---|---|")
  for group in packing.SPACE_GROUPS:
    params.packing.space_groups = [group]
    got, failed, times = [], 0, []
    for k in range(n):
      t0 = time.time()
      try:
        got.append(packing.generate(first + k, params))
      except Sorry:
        failed += 1
      times.append(time.time() - t0)
      print("  %s seed %d: %.1f s" % (group, first + k, times[-1]), file=sys.stderr, flush=True)
    v = np.array([c.volume_per_non_h for c in got])
    heavy = np.array([c.closest_contact_non_h for c in got])
    light = np.array([c.closest_contact_h for c in got])
    atoms = np.array([c.molecule.n_atoms for c in got])
    print("| %s | %d | %d | %.1f, %.1f | %d-%d | %.1f-%.1f | %.2f, %.2f | %.2f, %.2f |" % (
      group, len(got), failed, np.median(times), max(times), atoms.min(), atoms.max(), v.min(), v.max(),
      heavy.min(), np.median(heavy), light.min(), np.median(light)), flush=True)
    rows.append(got)


if __name__ == "__main__":
  main()

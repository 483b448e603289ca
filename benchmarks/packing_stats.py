"""Packed training crystals (cctbx_p2a.packing): time per crystal, density and
closest contacts, per space group.

    python benchmarks/packing_stats.py [crystals_per_group] [first_seed]

Prints one markdown row per space group (docs/crystals_network.md).
"""
import sys
import time

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np
from libtbx.utils import Sorry

from cctbx_p2a import packing


def main():
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
  first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
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

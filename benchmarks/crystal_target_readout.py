"""Can a perfect crystal-network target be read back as atoms?  The target
map (Gaussians of width sigma on the output grid) of real molecules, read by
sites.find_peaks as the read-out does, on 1.0 and 0.5 A voxels.

    python benchmarks/crystal_target_readout.py [STORE] [--crystals 20]

STORE defaults to training/crystals.npz (its first N crystals, canonical
images); cctbx's thpp is added.  Prints atoms within 0.5 and 0.3 A of a peak,
and peaks per atom (below 1: bonded atoms merged into one peak).
"""
import argparse
import os

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np

from cctbx_p2a import batch_data, crystal_data, evaluation, measured, patterson, placement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("store", nargs="?", default=os.path.join(REPO, "training", "crystals.npz"))
  ap.add_argument("--crystals", type=int, default=20)
  args = ap.parse_args()
  store = crystal_data.CrystalStore.load(args.store)
  images = [crystal_data.canonical_image(c)[0] for c in store.crystals[:args.crystals]]
  if measured.thpp_set():
    images.append(placement.image_of_structure(measured.load(measured.thpp_set())[1]).sites_cart)
  n_atoms = sum(len(i) for i in images)
  print("%d molecules, %d non-H atoms" % (len(images), n_atoms))
  print("| voxel (A) | sigma (A) | atoms within 0.5 A of a peak | within 0.3 A | peaks per atom |")
  print("|---|---|---|---|---|")
  for voxel in (1.0, 0.5):
    grid = patterson.GridSpec.from_edge(24, voxel)
    for sigma in (0.6, 0.5, 0.4, 0.3):
      maps = batch_data.target_grids(images, grid, sigma=sigma, inverses=False).numpy()
      scores = [evaluation.score_read_out(im, maps[k], voxel, inverses=False) for k, im in enumerate(images)]
      d = np.concatenate([s["distances"] for s in scores])
      print("| %.1f | %.1f | %.1f %% | %.1f %% | %.2f |" % (
        voxel, sigma, 100 * np.mean(d <= 0.5), 100 * np.mean(d <= 0.3),
        sum(s["n_peaks"] for s in scores) / n_atoms))


if __name__ == "__main__":
  main()

"""Throughput of the fast data path (cctbx_p2a.batch_data) on packed crystals,
beside the paper's isolated-molecule case: the numbers the crystal network's
compute plan (docs/crystals_network.md) is made from.

    python benchmarks/crystal_throughput.py [n_crystals] [d_min] [repeats]

Packed crystals (cctbx_p2a.packing) are made once (their time is reported
apart); each is fed to batch_data.model_inputs as the whole P1 content of its
cell, hydrogens included, so the Patterson window is the crystal's.
"""
import cctbx_p2a  # noqa: F401  (import order)

import sys
import time

import numpy as np
import torch

from cctbx_p2a import batch_data, packing, phil, train


def main():
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
  d_min = float(sys.argv[2]) if len(sys.argv) > 2 else 1.5
  repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
  torch.set_num_threads(1)
  params = phil.extract("train", "synthetic", "patterson")
  geometry = train.Geometry(params)
  t0 = time.time()
  crystals = [packing.generate(k) for k in range(n)]
  t_pack = (time.time() - t0) / n
  molecules, cells = [], []
  for c in crystals:
    p1 = c.xray_structure.expand_to_p1()
    orth = np.array(p1.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    sites = np.array(p1.sites_frac()) @ orth.T
    molecules.append(batch_data.Molecule.of(sites, [sc.scattering_type for sc in p1.scatterers()],
                                            np.array([sc.u_iso for sc in p1.scatterers()])))
    cells.append(p1.unit_cell())
  rates = []
  for _ in range(repeats):
    rngs = [np.random.default_rng(k) for k in range(n)]
    t0 = time.time()
    batch_data.model_inputs(molecules, cells, [d_min] * n, geometry.input, rngs, noise=0.03,
                            completeness=0.95, input_d_min=d_min)
    rates.append(n / (time.time() - t0))
  seeds = [train.example_seed(1, 0, k) for k in range(n)]
  paper = []
  for _ in range(repeats):
    t0 = time.time()
    batch_data.training_batch(seeds, params, geometry.input, geometry.output)
    paper.append(n / (time.time() - t0))
  atoms = [len(m.sites) for m in molecules]
  print("packing: %.1f s per crystal (%d crystals, %d-%d atoms per cell with H)" % (
    t_pack, n, min(atoms), max(atoms)))
  print("crystal inputs (%.1f A, %d^3 window, 1 thread): %.1f examples/s (best of %d)" % (
    d_min, geometry.input.n, max(rates), repeats))
  print("paper case (training_batch, same grid, 1 thread): %.1f examples/s (best of %d)" % (
    max(paper), repeats))


if __name__ == "__main__":
  main()

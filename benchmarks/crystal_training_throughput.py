"""Crystal-network training speed on this machine: examples made from a
crystal store (cctbx_p2a.crystal_data) against the network step, with the
settings of examples/train_crystals.phil.

    python benchmarks/crystal_training_throughput.py [STORE] [--threads 1] [--batches 8]

Data making must stay far faster than the step (issue 12's rule: 10x), so
that training is limited by the network alone.
"""
import argparse
import os
import time

import cctbx_p2a  # noqa: F401  (import order)
import iotbx.phil
import torch

from cctbx_p2a import crystal_data, network, phil, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("store", nargs="?", default=os.path.join(REPO, "training", "crystals.npz"))
  ap.add_argument("--threads", type=int, default=1)
  ap.add_argument("--batches", type=int, default=8)
  args = ap.parse_args()
  torch.set_num_threads(args.threads)
  master = phil.master_phil("train", "synthetic", "patterson")
  user = iotbx.phil.parse(open(os.path.join(REPO, "examples", "train_crystals.phil")).read())
  params = master.fetch(source=user).extract()
  params.train.crystal_store = args.store
  geometry = train.Geometry(params)
  store = crystal_data.CrystalStore.load(args.store)
  b = params.train.batch_size
  crystal_data.training_batch(list(range(b)), store, params, geometry.input, geometry.output)  # warm-up
  t0 = time.time()
  batches = [crystal_data.training_batch(list(range(k * b, (k + 1) * b)), store, params, geometry.input,
                                         geometry.output) for k in range(1, args.batches + 1)]
  data_rate = args.batches * b / (time.time() - t0)
  net = network.build("unet", geometry.input.n, geometry.output.n, params.network.channels,
                      symmetric=False, upsample=geometry.upsample)
  opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
  x, y = batches[0]
  train.peak_weighted_mse(net(x), y, params.train.peak_weight).backward()   # warm-up
  t0 = time.time()
  for x, y in batches:
    opt.zero_grad()
    train.peak_weighted_mse(net(x), y, params.train.peak_weight).backward()
    opt.step()
  step_rate = args.batches * b / (time.time() - t0)
  print("store %s: %d crystals; %d thread(s); batch %d; grid %d^3 -> %d^3 at %.1f A" % (
    args.store, len(store), args.threads, b, geometry.input.n, geometry.output.n, geometry.output.voxel))
  print("| what | examples/s |")
  print("|---|---|")
  print("| examples made from the store (crystal_data.training_batch) | %.1f |" % data_rate)
  print("| network step (forward + backward + AdamW), unet %d channels | %.1f |" % (
    params.network.channels, step_rate))
  print("data / step: %.1fx" % (data_rate / step_rate))


if __name__ == "__main__":
  main()

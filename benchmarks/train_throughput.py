"""Training throughput (samples/s) of the default architecture on this machine:
network step alone (random tensors), and data generation alone (cctbx path).

    python benchmarks/train_throughput.py [channels] [batch]
"""
import cctbx_p2a  # noqa: F401

import os
import time

import torch

from cctbx_p2a import network, phil, train

channels = int(os.sys.argv[1]) if len(os.sys.argv) > 1 else 8
batch = int(os.sys.argv[2]) if len(os.sys.argv) > 2 else 8
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_num_threads(os.cpu_count())
params = phil.extract("train", "synthetic", "patterson")
geometry = train.Geometry(params)
net = network.build("unet", geometry.input.n, geometry.output.n, channels).to(device)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
x = torch.randn(batch, 1, geometry.input.n, geometry.input.n, geometry.input.n, device=device)
y = torch.rand(batch, 1, geometry.output.n, geometry.output.n, geometry.output.n, device=device)
for i in range(13):
  if i == 3:
    if device.type == "cuda":
      torch.cuda.synchronize()
    t0 = time.time()
  loss = train.peak_weighted_mse(net(x), y, 20)
  opt.zero_grad()
  loss.backward()
  opt.step()
if device.type == "cuda":
  torch.cuda.synchronize()
net_rate = 10 * batch / (time.time() - t0)
t0 = time.time()
for k in range(20):
  train.make_pair(params, geometry, train.TRAIN_STREAM, k)
data_rate = 20 / (time.time() - t0)
print("device %s, %d threads, unet channels=%d (%d parameters), batch %d" % (
  train.hardware_description(device), torch.get_num_threads(), channels, network.count_parameters(net), batch))
print("network step: %.1f samples/s;  data generation (one process): %.1f samples/s" % (net_rate, data_rate))

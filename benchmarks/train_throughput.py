"""Training throughput (samples/s) on this machine, as tables for docs/training.md:

1. data making alone: the fast path (cctbx_p2a.batch_data) and the cctbx path,
   for the paper's case and for the realistic model's data (random cells,
   noise, intensities through French-Wilson); the Patterson window alone,
   batch_data's sums against a full-cell FFT;
2. the network step alone (forward, backward, AdamW on random tensors);
3. the whole training loop (p2a.train's Trainer, validation excluded);
4. the whole loop under torchrun with 1 and 2 processes (gloo on the CPU).

    python benchmarks/train_throughput.py [--channels 8] [--batch 8] [--steps 20] [--no-ddp]

Wall-clock rates; on a shared machine run it when nothing else does, and
compare rows of one run only.
"""
import cctbx_p2a  # noqa: F401  (import-order fix before torch)

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from cctbx_p2a import batch_data, network, phil, train

REALISTIC = {"synthetic.random_cell": True, "synthetic.d_min": "1 3", "synthetic.elements": "C N O",
             "synthetic.heavy_atom_fraction": 0.3, "synthetic.n_atoms": "4 20",
             "synthetic.u_iso": "0.01 0.06", "synthetic.noise": "0 0.1", "synthetic.completeness": "0.8 1",
             "synthetic.observation": "intensities"}


def rate(fn, samples, repeats):
  """(samples/s of the best wall time, samples per CPU-second of this process
  in that run) over `repeats` runs of fn(): the least disturbed run.  On a
  shared machine the second is the steadier one; with several threads it is
  samples per core-second."""
  fn()
  best = min(timed(fn) for _ in range(repeats))
  return samples / best[0], samples / best[1]


def timed(fn):
  start, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - start, time.process_time() - cpu


def data_rates(batch, repeats):
  rows = []
  for case, settings in (("paper", {}), ("realistic", REALISTIC)):
    params = phil.extract("train", "synthetic", "patterson", **settings)
    geometry = train.Geometry(params)
    counter = iter(range(10 ** 9))
    for threads in (1, 2):
      torch.set_num_threads(threads)
      fast = rate(lambda: batch_data.training_batch(
        [train.example_seed(1, 0, next(counter)) for _ in range(batch)], params, geometry.input,
        geometry.output), batch, repeats)
      rows.append(("fast path, batch %d" % batch, case, threads) + fast)
    torch.set_num_threads(1)
    slow = rate(lambda: train.make_pair(params, geometry, train.TRAIN_STREAM, next(counter)), 1, 3 * repeats)
    rows.append(("cctbx path, one case", case, 1) + slow)
  return rows


def window_rates(batch, repeats):
  """The Patterson window alone, paper case, one thread: batch_data's sums on
  the window against the alternative, a full-cell inverse FFT on cctbx's
  grid (81^3 here) followed by the trilinear gather of the window."""
  torch.set_num_threads(1)
  params = phil.extract("train", "synthetic", "patterson")
  geometry = train.Geometry(params)
  cases = [batch_data.draw_case(train.example_seed(1, 0, k), params.synthetic) for k in range(batch)]
  reflections = batch_data.UniqueReflections([c.unit_cell for c in cases], [c.d_min for c in cases])
  obs = batch_data.observe(reflections, batch_data.intensities(reflections, [c.molecule for c in cases]),
                           [c.rng for c in cases], 0.0, 1.0)
  sums = rate(lambda: batch_data.patterson_windows(reflections, obs, geometry.input), batch, repeats)
  n = batch_data.cctbx_gridding(cases[0].unit_cell, cases[0].d_min, params.patterson.resolution_factor)[0]
  spectrum = torch.randn(batch, n, n, n // 2 + 1, dtype=torch.complex64)
  corners = torch.randint(0, n ** 3, (batch, 8 * geometry.input.n ** 3))
  weights = torch.rand(batch, 8, geometry.input.n ** 3)

  def fft_window():
    cell_map = torch.fft.irfftn(spectrum, s=(n, n, n), dim=(1, 2, 3)).reshape(batch, -1)
    return (torch.gather(cell_map, 1, corners).view(batch, 8, -1) * weights).sum(1)
  return [("Patterson window: sums on the window", "paper", 1) + sums,
          ("Patterson window: full-cell FFT %d^3 + gather" % n, "paper", 1) + rate(fft_window, batch, repeats)]


def network_rates(channels, batch, repeats):
  params = phil.extract("train", "synthetic", "patterson")
  geometry = train.Geometry(params)
  rows = []
  for threads in (1, 2):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = network.build("unet", geometry.input.n, geometry.output.n, channels)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, geometry.input.n, geometry.input.n, geometry.input.n)
    y = torch.rand(batch, 1, geometry.output.n, geometry.output.n, geometry.output.n)

    def step():
      loss = train.peak_weighted_mse(net(x), y, 20)
      opt.zero_grad()
      loss.backward()
      opt.step()
    rows.append(("network step, batch %d" % batch, "paper", threads) + rate(step, batch, repeats))
  return rows, network.count_parameters(net)


def loop_settings(channels, batch, steps, output_dir, **extra):
  settings = {"network.channels": channels, "train.batch_size": batch, "train.steps": steps,
              "train.validation_cases": batch, "train.validate_every": 10 ** 6,
              "train.checkpoint_every": 10 ** 6, "train.evaluation_cases": 0,
              "train.output_dir": output_dir, "train.warmup_steps": 1}
  settings.update(extra)
  return settings


def loop_rates(channels, batch, steps):
  """The Trainer's loop for `steps` steps after 2 warm-up steps, validation left out."""
  rows = []
  for data_path, workers, threads in (("fast", 0, 1), ("fast", 0, 2), ("fast", 1, 1), ("cctbx", 1, 1)):
    with tempfile.TemporaryDirectory() as out:
      params = phil.extract("train", "synthetic", "patterson", **loop_settings(
        channels, batch, steps + 2, out, **{"train.data_path": data_path, "train.data_workers": workers,
                                            "train.threads": threads}))
      trainer = train.Trainer(params, log=open(os.devnull, "w"), progress=False)
      params.train.steps = 2
      trainer.train()
      params.train.steps = steps + 2
      seconds, cpu = timed(trainer.train)
      trainer.close()
    rows.append(("whole loop, %s data, %d worker%s" % (data_path, workers, "" if workers == 1 else "s"),
                 "paper", torch.get_num_threads(), steps * batch / seconds,
                 steps * batch / cpu if not workers else float("nan")))
  return rows


def ddp_rates(channels, batch, steps):
  """torchrun with 1 and 2 processes (gloo), the same global batch; the rate
  is p2a.train's own, from its last progress line."""
  rows = []
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  for n, threads in ((1, 1), (1, 2), (2, 1)):
    with tempfile.TemporaryDirectory() as out:
      settings = loop_settings(channels, batch, steps, out, **{"train.progress_every": steps,
                                                               "train.data_workers": 0,
                                                               "train.threads": threads})
      done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=%d" % n,
         "-m", "cctbx_p2a.programs.train"] + ["%s=%s" % kv for kv in settings.items()],
        env=env, capture_output=True, text=True)
      found = re.findall(r"step %d/%d .* ([0-9.]+) samples/s" % (steps, steps), done.stdout)
      if done.returncode or not found:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    rows.append(("torchrun, %d process%s (gloo), fast data" % (n, "" if n == 1 else "es"), "paper",
                 threads, float(found[-1]), float("nan")))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--channels", type=int, default=8)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=20, help="steps of each whole-loop measurement")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no-ddp", action="store_true")
  args = parser.parse_args()
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print("machine: %s, %d cores; load average before: %.2f; torch %s" % (
    train.hardware_description(torch.device("cpu")), os.cpu_count() or 1, load, torch.__version__))
  rows = data_rates(args.batch, args.repeats)
  rows += window_rates(args.batch, args.repeats)
  net_rows, n_params = network_rates(args.channels, args.batch, args.repeats)
  rows += net_rows
  rows += loop_rates(args.channels, args.batch, args.steps)
  if not args.no_ddp:
    rows += ddp_rates(args.channels, args.batch, args.steps)
  print("unet channels=%d (%d parameters), batch %d\n" % (args.channels, n_params, args.batch))
  print("| what | data | torch threads (per process) | samples/s | samples per CPU-second |")
  print("|---|---|---|---|---|")
  for what, case, threads, value, per_cpu in rows:
    print("| %s | %s | %d | %.1f | %s |" % (what, case, threads, value,
                                           "-" if per_cpu != per_cpu else "%.1f" % per_cpu))
  after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print("\nload average after: %.2f" % after)
  print(json.dumps({"rows": rows, "load_average_before": load, "load_average_after": after}))


if __name__ == "__main__":
  main()

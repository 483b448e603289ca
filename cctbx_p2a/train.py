"""Training: synthetic Patterson/atom-map pairs -> a model file with its card.

Read it top to bottom: configuration comes from PHIL (train, network,
synthetic, patterson, target scopes), data is made on the fly from seeds, and
the loop is plain AdamW on per-voxel MSE with warm-up + cosine decay.

Reproducible and resumable: example k of the training stream is made from
seed (train.seed, 0, k) and step s always consumes examples
[s*batch, (s+1)*batch), so a run resumed from a checkpoint sees exactly the
data it would have seen, with the optimiser state it had.  Checkpoints are
written atomically (temp file + rename), so a kill never leaves a broken one.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from cctbx_p2a import network, patterson, synthetic

TRAIN_STREAM, VALIDATION_STREAM, EVALUATION_STREAM = 0, 1, 2


def example_seed(seed, stream, k):
  """Independent, reproducible seed of example k of a stream."""
  return int(np.random.SeedSequence([seed, stream, k]).generate_state(1)[0])


class Geometry:
  """Input and output grids implied by the patterson and target scopes."""

  def __init__(self, params):
    self.input = patterson.GridSpec.from_edge(params.patterson.box_edge, params.patterson.voxel)
    self.output = patterson.GridSpec.from_edge(params.target.output_box_edge, params.patterson.voxel)

  def as_dict(self):
    return {"input_n": self.input.n, "output_n": self.output.n, "voxel": self.input.voxel}


def make_pair(params, geometry, stream, k):
  return synthetic.training_pair(example_seed(params.train.seed, stream, k), params.synthetic,
                                 params.patterson, params.target, geometry.output)


class PairStream(torch.utils.data.IterableDataset):
  """Batches of training pairs starting at a given step; with several workers,
  worker w makes every w-th batch and the loader interleaves them in order."""

  def __init__(self, params, geometry, first_step):
    self.params, self.geometry, self.first_step = params, geometry, first_step

  def __iter__(self):
    info = torch.utils.data.get_worker_info()
    w, n_workers = (info.id, info.num_workers) if info else (0, 1)
    bs = self.params.train.batch_size
    step = self.first_step + w
    while True:
      pairs = [make_pair(self.params, self.geometry, TRAIN_STREAM, step * bs + b) for b in range(bs)]
      yield (torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None],
             torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None])
      step += n_workers


def learning_rate(step, params):
  t = params.train
  if step < t.warmup_steps:
    return t.learning_rate * (step + 1) / t.warmup_steps
  progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
  return t.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def choose_device(params):
  if params.train.device == "cuda" or (params.train.device == "auto" and torch.cuda.is_available()):
    return torch.device("cuda")
  torch.set_num_threads(params.train.threads or os.cpu_count() or 1)
  return torch.device("cpu")


def save_checkpoint(path, state):
  tmp = path + ".tmp"
  torch.save(state, tmp)
  os.replace(tmp, path)


def peak_weighted_mse(prediction, target, peak_weight):
  """Per-voxel MSE with weight 1 + peak_weight * target / 0.5.

  The target is sparse (atoms fill ~3 % of the output window), so plain MSE
  has a deep trough at "predict nothing"; weighting voxels by the target's
  height (0.5 at an atom) makes missing an atom cost as much as the empty
  space around it.  peak_weight = 0 is the paper's plain MSE."""
  if peak_weight == 0:
    return F.mse_loss(prediction, target)
  w = 1.0 + (peak_weight / 0.5) * target
  return (w * (prediction - target) ** 2).sum() / w.sum()


@torch.no_grad()
def validation_loss(net, batches, device, peak_weight):
  net.eval()
  total = sum(peak_weighted_mse(net(x.to(device)), y.to(device), peak_weight).item() for x, y in batches)
  net.train()
  return total / len(batches)


def hardware_description(device):
  if device.type == "cuda":
    return torch.cuda.get_device_name(0)
  return "%s CPU, %d threads (%s)" % (platform.machine(), torch.get_num_threads(), platform.processor() or "cpu")


def run(params, log=sys.stdout, progress=True):
  """Train (or resume) a model; returns the model card written next to it."""
  t = params.train
  geometry = Geometry(params)
  device = choose_device(params)
  torch.manual_seed(t.seed)
  net = network.build(params.network.architecture, geometry.input.n, geometry.output.n,
                      params.network.channels).to(device)
  opt = torch.optim.AdamW(net.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
  os.makedirs(t.output_dir, exist_ok=True)
  stem = os.path.join(t.output_dir, t.name)
  ckpt_path = stem + ".ckpt"
  step, history, elapsed_before = 0, [], 0.0
  init_from = None
  if t.init_from and not t.resume:
    init_from = start_from_model(net, t.init_from, params, geometry)
    print("Starting from the weights of %s (%s)" % (init_from["name"], init_from["sha256"][:12]), file=log)
  if t.resume:
    state = torch.load(t.resume, map_location=device, weights_only=False)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    step, history, elapsed_before = state["step"], state["history"], state["elapsed_s"]
    torch.set_rng_state(state["torch_rng"])
    init_from = state.get("init_from")
    print("Resumed from %s at step %d" % (t.resume, step), file=log)
  print("Model: %s, %d parameters; grid %d^3 -> %d^3 at %.2f A; device %s" % (
    params.network.architecture, network.count_parameters(net), geometry.input.n,
    geometry.output.n, geometry.input.voxel, hardware_description(device)), file=log)

  val_batches = []
  for b in range(0, t.validation_cases, t.batch_size):
    pairs = [make_pair(params, geometry, VALIDATION_STREAM, k)
             for k in range(b, min(t.validation_cases, b + t.batch_size))]
    val_batches.append((torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None],
                        torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]))

  loader = torch.utils.data.DataLoader(
    PairStream(params, geometry, step), batch_size=None, num_workers=t.data_workers,
    prefetch_factor=4 if t.data_workers else None, persistent_workers=False)
  batches = iter(loader)
  t0 = time.time()
  started_at, running = step, None
  stop_at = t0 + 60 * t.max_minutes if t.max_minutes else None
  net.train()
  while step < t.steps:
    lr = learning_rate(step, params)
    for group in opt.param_groups:
      group["lr"] = lr
    x, y = next(batches)
    loss = peak_weighted_mse(net(x.to(device)), y.to(device), t.peak_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    step += 1
    running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
    elapsed = time.time() - t0
    if progress:
      rate = (step - started_at) / max(elapsed, 1e-9)
      eta = (t.steps - step) / max(rate, 1e-9)
      print("\rstep %d/%d  loss %.5f  lr %.2e  %.2f samples/s  ETA %s   " % (
        step, t.steps, running, lr, rate * t.batch_size, format_seconds(eta)),
        end="", file=log, flush=True)
    val = None
    if step % t.validate_every == 0 or step == t.steps:
      val = validation_loss(net, val_batches, device, t.peak_weight)
      if progress:
        print("", file=log)
      print("step %d  train %.5f  validation %.5f  (%.0f s)" % (step, running, val, elapsed + elapsed_before),
            file=log, flush=True)
    if val is not None or step % 50 == 0:
      history.append({"step": step, "train_loss": running, "validation_loss": val,
                      "elapsed_s": round(elapsed_before + elapsed, 1)})
    out_of_time = (stop_at is not None and time.time() > stop_at) or step == t.stop_at_step
    if step % t.checkpoint_every == 0 or step == t.steps or out_of_time:
      save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                  "step": step, "history": history,
                                  "elapsed_s": elapsed_before + elapsed,
                                  "torch_rng": torch.get_rng_state(), "params": params_text(params),
                                  "init_from": init_from})
    if out_of_time:
      print("\nStopped at step %d; continue with train.resume=%s" % (step, ckpt_path),
            file=log)
      break
  if progress:
    print("", file=log)
  train_seconds = elapsed_before + time.time() - t0
  card = model_card(params, geometry, net, history, train_seconds, device, finished=step >= t.steps)
  if init_from:
    card["training"]["init_from"] = init_from
  net_cpu = net.to("cpu").eval()
  if step >= t.steps and t.evaluation_cases > 0:
    from cctbx_p2a import evaluation
    model = network.Model(net_cpu, card)
    metrics = evaluation.evaluate_network(model, params, t.evaluation_cases, log=log)
    card["metrics"] = metrics
  card = network.save(net_cpu, stem, card)
  print("Wrote %s.pt and %s.json" % (stem, stem), file=log)
  return card


def start_from_model(net, name_or_path, params, geometry):
  """Copy a trained model's weights into `net` (fine-tuning); returns what
  the card records about it.  The architecture and grids must match."""
  from libtbx.utils import Sorry
  model = network.load(name_or_path)
  arch = model.card["architecture"]
  if (arch["name"], arch["channels"]) != (params.network.architecture, params.network.channels) \
      or model.card["grid"] != geometry.as_dict():
    raise Sorry("train.init_from=%s is a %s (channels %d) on grid %s; this run builds a %s "
                "(channels %d) on grid %s. Set network.* and patterson.box_edge/voxel, "
                "target.output_box_edge to match, or start from random weights."
                % (name_or_path, arch["name"], arch["channels"], model.card["grid"],
                   params.network.architecture, params.network.channels, geometry.as_dict()))
  net.load_state_dict(model.net.state_dict())
  return {"name": model.name, "sha256": model.card.get("sha256"),
          "examples_seen": model.card.get("training_data", {}).get("examples_seen")}


def format_seconds(s):
  s = int(s)
  return "%d:%02d:%02d" % (s // 3600, (s % 3600) // 60, s % 60)


def params_text(params):
  from cctbx_p2a import phil
  return phil.master_phil("train", "synthetic", "patterson").format(python_object=params).as_str()


def model_card(params, geometry, net, history, seconds, device, finished):
  import cctbx
  s, t = params.synthetic, params.train
  lo, hi = (list(s.n_atoms) * 2)[:2]
  cell = params.synthetic.unit_cell.parameters()
  return {
    "name": t.name,
    "format": "cctbx_p2a model card v1",
    "architecture": {"name": params.network.architecture, "channels": params.network.channels,
                     "parameters": network.count_parameters(net)},
    "grid": geometry.as_dict(),
    "patterson": {"resolution_factor": params.patterson.resolution_factor,
                  "sharpening": params.patterson.sharpening,
                  "origin_peak_removal": params.patterson.origin_peak_removal,
                  "input_d_min": params.patterson.input_d_min,
                  "normalisation": "zero mean, unit RMS over the input window"},
    "target": {"sigma": params.target.sigma, "inverses": params.target.inverses,
               "centre": params.target.centre},
    "training_data": {"seed": t.seed, "examples_seen": len(history) and history[-1]["step"] * t.batch_size,
                      "synthetic": phil_scope_dict(params, "synthetic")},
    "training": {"steps": t.steps, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                 "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
                 "loss": "peak-weighted MSE, peak_weight=%g" % t.peak_weight,
                 "finished": finished, "history": history},
    "domain": {"space_groups": ["P 1"],
               "n_atoms": [lo, hi],
               "elements": [str(e) for e in s.elements] + ([s.heavy_element] if s.heavy_atom_fraction else []),
               "d_min": list(s.d_min), "noise": list(s.noise), "completeness": list(s.completeness),
               "molecule_extent_A": 2 * s.extent,
               "cell_edges_A": list(s.cell_edges) if s.random_cell else [min(cell[:3]), max(cell[:3])],
               "cell_angles_deg": list(s.cell_angles) if s.random_cell else [min(cell[3:]), max(cell[3:])]},
    "hardware": hardware_description(device),
    "wall_time_s": round(seconds, 1),
    "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                 "cctbx": getattr(cctbx, "__version__", "cctbx-base")},
  }


def phil_scope_dict(params, name):
  scope = getattr(params, name)
  out = {}
  for key in dir(scope):
    if key.startswith("_"):
      continue
    value = getattr(scope, key)
    if hasattr(value, "parameters"):
      value = list(value.parameters())
    elif isinstance(value, (list, tuple)):
      value = [v if isinstance(v, (int, float)) else str(v) for v in value]
    elif not isinstance(value, (int, float, bool, type(None))):
      value = str(value)
    out[key] = value
  return out

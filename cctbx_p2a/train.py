"""Training: synthetic Patterson/atom-map pairs -> a model file with its card.

Read it top to bottom: configuration comes from PHIL (train, network,
synthetic, patterson, target scopes), data is made on the fly from seeds, and
the loop is plain AdamW on per-voxel MSE with warm-up + cosine decay.

Data: ``train.data_path=fast`` (default) makes whole batches with
:mod:`cctbx_p2a.batch_data`, which gives the network the input the cctbx path
gives it (``tests/test_batch_data.py``) many times faster; ``cctbx`` makes one
case at a time through :func:`cctbx_p2a.synthetic.training_pair`.

Reproducible and resumable: example k of the training stream is made from
seed (train.seed, 0, k) and step s always consumes examples
[s*batch, (s+1)*batch), so a run resumed from a checkpoint sees exactly the
data it would have seen, with the optimiser state it had.  Checkpoints are
written atomically (temp file + rename), so a kill never leaves a broken one;
SIGTERM or SIGINT (Slurm's warning before its time limit, Ctrl-C) ends the
current step, writes a checkpoint and stops, so nothing is lost.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) every process trains a
DistributedDataParallel replica (gloo on the CPU, NCCL on GPUs).  batch_size
is the batch of the whole step; rank r of W makes examples
[s*batch + r*batch/W, s*batch + (r+1)*batch/W), so ranks see disjoint seeds
and a checkpoint resumes with any world size on the same stream.  The loss is
normalised over the whole step's batch, so the gradients are the
single-process ones.  Rank 0 alone writes checkpoints, the model and its card.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from libtbx.utils import Sorry

from cctbx_p2a import network, patterson, synthetic

TRAIN_STREAM, VALIDATION_STREAM, EVALUATION_STREAM = 0, 1, 2


def example_seed(seed, stream, k):
  """Independent, reproducible seed of example k of a stream."""
  return int(np.random.SeedSequence([seed, stream, k]).generate_state(1)[0])


class Geometry:
  """Input and output grids implied by the patterson and target scopes."""

  def __init__(self, params):
    self.input = patterson.GridSpec.from_edge(params.patterson.box_edge, params.patterson.voxel)
    voxel = params.target.voxel or params.patterson.voxel
    self.output = patterson.GridSpec.from_edge(params.target.output_box_edge, voxel)
    self.upsample = int(round(params.patterson.voxel / voxel))
    if self.upsample not in (1, 2) or abs(self.upsample * voxel - params.patterson.voxel) > 1e-6:
      raise Sorry("target.voxel must be patterson.voxel (%.2f A) or half of it, not %.3f A." % (
        params.patterson.voxel, voxel))

  def as_dict(self):
    grid = {"input_n": self.input.n, "output_n": self.output.n, "voxel": self.input.voxel}
    if self.upsample != 1:
      grid["output_voxel"] = self.output.voxel
    return grid


def make_pair(params, geometry, stream, k):
  """One example through the cctbx path (numpy input and target grids)."""
  return synthetic.training_pair(example_seed(params.train.seed, stream, k), params.synthetic,
                                 params.patterson, params.target, geometry.output)


def make_batch(params, geometry, stream, examples, device="cpu"):
  """(inputs (B, 1, n_in^3), targets (B, 1, n_out^3)) of the given example
  numbers of a stream, by train.data_path (or from train.crystal_store)."""
  if params.train.crystal_store:
    from cctbx_p2a import crystal_data
    seeds = [example_seed(params.train.seed, stream, k) for k in examples]
    store = crystal_data.training_split(params.train, held_out=stream != TRAIN_STREAM)
    return crystal_data.training_batch(seeds, store, params, geometry.input, geometry.output, device=device)
  if params.train.data_path == "fast":
    from cctbx_p2a import batch_data
    seeds = [example_seed(params.train.seed, stream, k) for k in examples]
    return batch_data.training_batch(seeds, params, geometry.input, geometry.output, device=device)
  pairs = [make_pair(params, geometry, stream, k) for k in examples]
  return (torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None].to(device),
          torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None].to(device))


def rank_examples(step, batch_size, rank, world_size):
  """Example numbers this rank trains on at `step`: its share of the step's batch."""
  share = batch_size // world_size
  first = step * batch_size + rank * share
  return range(first, first + share)


class PairStream(torch.utils.data.IterableDataset):
  """This rank's batches from a given step on; with several workers, worker w
  makes every w-th batch and the loader interleaves them in order."""

  def __init__(self, params, geometry, first_step, rank=0, world_size=1):
    self.params, self.geometry, self.first_step = params, geometry, first_step
    self.rank, self.world_size = rank, world_size

  def __iter__(self):
    info = torch.utils.data.get_worker_info()
    w, n_workers = (info.id, info.num_workers) if info else (0, 1)
    step = self.first_step + w
    while True:
      yield make_batch(self.params, self.geometry, TRAIN_STREAM,
                       rank_examples(step, self.params.train.batch_size, self.rank, self.world_size))
      step += n_workers


def _worker_ignores_signals(_):
  """Data workers leave SIGTERM/SIGINT to the training process, which
  finishes its step and checkpoints before they are shut down."""
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def learning_rate(step, params):
  t = params.train
  if step < t.warmup_steps:
    return t.learning_rate * (step + 1) / t.warmup_steps
  progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
  return t.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def choose_device(params, local_rank=0, local_world_size=1):
  """train.device: auto picks cuda, then mps (Apple GPUs), then the CPU.
  On the CPU, threads default to the cores shared among this node's processes."""
  wanted = params.train.device
  if wanted == "auto":
    if torch.cuda.is_available():
      wanted = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
      wanted = "mps"
    else:
      wanted = "cpu"
  if wanted == "cuda":
    if not torch.cuda.is_available():
      raise Sorry("train.device=cuda but torch sees no CUDA GPU (torch %s): install a CUDA build of "
                  "torch, or use train.device=auto." % torch.__version__)
    torch.cuda.set_device(local_rank % torch.cuda.device_count())
    return torch.device("cuda", local_rank % torch.cuda.device_count())
  if wanted == "mps":
    if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
      raise Sorry("train.device=mps but this torch has no MPS (Apple GPU) support: use train.device=auto.")
    return torch.device("mps")
  torch.set_num_threads(params.train.threads or max(1, (os.cpu_count() or 1) // local_world_size))
  return torch.device("cpu")


def use_bf16(params, device):
  """train.mixed_precision: auto = bf16 autocast on CUDA GPUs that support it
  (Ampere and later: tensor cores, half the activation memory); full float32
  on the CPU and MPS, where bf16 convolutions are slower, not faster."""
  choice = params.train.mixed_precision
  if choice == "off":
    return False
  supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
  if choice == "bf16" and not supported:
    raise Sorry("train.mixed_precision=bf16 needs a CUDA GPU with bf16 support (this run is on %s): "
                "use mixed_precision=auto or off." % device)
  return supported


def autocast(device, enabled):
  if not enabled:
    return contextlib.nullcontext()
  return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def save_checkpoint(path, state):
  tmp = path + ".tmp"
  torch.save(state, tmp)
  os.replace(tmp, path)


def peak_weighted_mse(prediction, target, peak_weight, weight_total=None):
  """Per-voxel MSE with weight 1 + peak_weight * target / 0.5.

  The target is sparse (atoms fill ~3 % of the output window), so plain MSE
  has a deep trough at "predict nothing"; weighting voxels by the target's
  height (0.5 at an atom) makes missing an atom cost as much as the empty
  space around it.  peak_weight = 0 is the paper's plain MSE.

  weight_total: the sum of the weights over the whole step's batch when this
  process holds only part of it (distributed training), so that the
  processes' averaged gradients are those of the whole batch."""
  prediction = prediction.float()
  if peak_weight == 0:
    return F.mse_loss(prediction, target)
  w = 1.0 + (peak_weight / 0.5) * target
  return (w * (prediction - target) ** 2).sum() / (w.sum() if weight_total is None else weight_total)


def is_terminal(log):
  """True when every stream behind `log` is a terminal (libtbx's multi_out
  says False for itself, so ask its streams)."""
  streams = getattr(log, "file_objects", None) or [log]
  try:
    return all(s.isatty() for s in streams)
  except (AttributeError, ValueError):
    return False


def hardware_description(device):
  if device.type == "cuda":
    return torch.cuda.get_device_name(device)
  if device.type == "mps":
    return "Apple GPU (mps)"
  return "%s CPU, %d threads (%s)" % (platform.machine(), torch.get_num_threads(), platform.processor() or "cpu")


class Distributed:
  """This process's place in a torchrun job (rank 0 of 1 without one)."""

  def __init__(self):
    self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
    self.rank = int(os.environ.get("RANK", "0"))
    self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world_size)))
    self.started_here = False

  @property
  def active(self):
    return self.world_size > 1

  def start(self, device):
    if self.active and not dist.is_initialized():
      if device.type == "mps":
        raise Sorry("Distributed training on MPS is not supported by torch: run one process, or use "
                    "train.device=cpu.")
      dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
      self.started_here = True

  def all_sum(self, values, device):
    """Sum of a few floats over all processes (the values themselves alone)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if self.active:
      dist.all_reduce(tensor)
    return tensor.tolist()

  def stop(self):
    if self.started_here and dist.is_initialized():
      dist.destroy_process_group()


class StopRequest:
  """SIGTERM/SIGINT during training: finish the step, checkpoint, stop."""

  def __init__(self):
    self.signal = None
    self.previous = {}

  def __enter__(self):
    if threading_main():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self.previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self.previous.items():
      signal.signal(sig, handler)


def threading_main():
  import threading
  return threading.current_thread() is threading.main_thread()


class Trainer:
  """One training run (or one chunk of it): set up by the constructor,
  trained by :meth:`train`, written by :meth:`finish` (rank 0)."""

  def __init__(self, params, log=sys.stdout, progress=True):
    t = params.train
    self.params, self.progress = params, progress
    self.dist = Distributed()
    self.rank, self.world_size = self.dist.rank, self.dist.world_size
    self.log = log if self.rank == 0 else open(os.devnull, "w")
    if t.batch_size % self.world_size:
      raise Sorry("train.batch_size=%d is the batch of a whole step and must split evenly over %d "
                  "processes: choose a multiple of %d." % (t.batch_size, self.world_size, self.world_size))
    self.geometry = Geometry(params)
    self.device = choose_device(params, self.dist.local_rank, self.dist.local_world_size)
    self.dist.start(self.device)
    self.bf16 = use_bf16(params, self.device)
    if t.data_path == "fast" or t.crystal_store:
      from cctbx_p2a import batch_data
      batch_data.check_supported(params.patterson)
    if t.resume and t.crystal_store and not t.crystal_count:   # the resumed run's crystals
      t.crystal_count = torch.load(t.resume, map_location="cpu", weights_only=False).get("crystal_count")
    self.crystals = None
    if t.crystal_store:
      from cctbx_p2a import crystal_data
      self.crystals = crystal_data.check_training_store(params)
      print(self.crystals["summary"], file=self.log)
      t.crystal_count = self.crystals["crystal_count"]
    torch.manual_seed(t.seed)
    self.net = network.build(params.network.architecture, self.geometry.input.n, self.geometry.output.n,
                             params.network.channels, symmetric=params.target.inverses,
                             upsample=self.geometry.upsample).to(self.device)
    self.opt = torch.optim.AdamW(self.net.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    os.makedirs(t.output_dir, exist_ok=True)
    self.stem = os.path.join(t.output_dir, t.name)
    self.ckpt_path = self.stem + ".ckpt"
    self.step, self.history, self.elapsed_before, self.init_from = 0, [], 0.0, None
    if t.init_from and not t.resume:
      self.init_from = start_from_model(self.net, t.init_from, params, self.geometry)
      print("Starting from the weights of %s (%s)" % (self.init_from["name"], self.init_from["sha256"][:12]),
            file=self.log)
    if t.resume:
      self._resume(t.resume)
    self.model = self.net
    if self.dist.active:   # replicas start from rank 0's weights; gradients are averaged
      self.model = torch.nn.parallel.DistributedDataParallel(
        self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
    print("Model: %s, %d parameters; grid %d^3 -> %d^3 at %.2f A; device %s%s; data %s%s" % (
      params.network.architecture, network.count_parameters(self.net), self.geometry.input.n,
      self.geometry.output.n, self.geometry.input.voxel, hardware_description(self.device),
      ", bf16 autocast" if self.bf16 else "", t.data_path,
      "; %d processes (%s)" % (self.world_size, dist.get_backend()) if self.dist.active else ""),
      file=self.log)

  def _resume(self, path):
    t = self.params.train
    state = torch.load(path, map_location=self.device, weights_only=False)
    if state.get("batch_size", t.batch_size) != t.batch_size:
      raise Sorry("%s was trained with train.batch_size=%d; resume with the same batch_size (the "
                  "number of processes may change)." % (path, state["batch_size"]))
    self.net.load_state_dict(state["model"])
    self.opt.load_state_dict(state["optimizer"])
    self.step, self.history, self.elapsed_before = state["step"], state["history"], state["elapsed_s"]
    torch.set_rng_state(state["torch_rng"].cpu())   # map_location moved it to the GPU
    self.init_from = state.get("init_from")
    print("Resumed from %s at step %d (written by %d process%s, now %d)" % (
      path, self.step, state.get("world_size", 1), "" if state.get("world_size", 1) == 1 else "es",
      self.world_size), file=self.log)

  def _validation_batches(self):
    """This rank's share of the fixed validation set (batches r, r+W, ...)."""
    t = self.params.train
    starts = list(range(0, t.validation_cases, t.batch_size))
    mine = starts[self.rank::self.world_size]
    return [make_batch(self.params, self.geometry, VALIDATION_STREAM,
                       range(b, min(t.validation_cases, b + t.batch_size))) for b in mine], len(starts)

  @torch.no_grad()
  def validation_loss(self, batches, n_batches):
    self.net.eval()
    with autocast(self.device, self.bf16):
      total = sum(peak_weighted_mse(self.net(x.to(self.device)), y.to(self.device),
                                    self.params.train.peak_weight).item() for x, y in batches)
    self.net.train()
    return self.dist.all_sum([total], self.device)[0] / max(1, n_batches)

  def _batches(self):
    t = self.params.train
    if self.device.type != "cpu" and t.data_path == "fast" and not t.crystal_store \
       and not self.params.synthetic.random_cell:
      # the fast path runs on the GPU itself: no workers, no copies.  Not for a
      # crystal store: its per-crystal steps ran at 80 examples/s on an H100,
      # slower than one CPU worker here (150/s), so workers make those batches;
      # nor for random cells, made case by case in the same way.
      def on_device():
        step = self.step
        while True:
          yield make_batch(self.params, self.geometry, TRAIN_STREAM,
                           rank_examples(step, t.batch_size, self.rank, self.world_size), self.device)
          step += 1
      return on_device()
    loader = torch.utils.data.DataLoader(
      PairStream(self.params, self.geometry, self.step, self.rank, self.world_size), batch_size=None,
      num_workers=t.data_workers, prefetch_factor=4 if t.data_workers else None,
      persistent_workers=False, worker_init_fn=_worker_ignores_signals if t.data_workers else None)
    return iter(loader)

  def _checkpoint(self, elapsed):
    if self.rank != 0:
      return
    save_checkpoint(self.ckpt_path, {
      "model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
      "history": self.history, "elapsed_s": self.elapsed_before + elapsed,
      "torch_rng": torch.get_rng_state(), "params": params_text(self.params), "init_from": self.init_from,
      "batch_size": self.params.train.batch_size, "world_size": self.world_size,
      "crystal_count": self.params.train.crystal_count,
      "examples_seen": self.step * self.params.train.batch_size})

  def train(self):
    """Train to train.steps, or until train.stop_at_step, train.max_minutes or
    a signal; returns True when all steps are done."""
    t, log = self.params.train, self.log
    val_batches, n_val = self._validation_batches()
    batches = self._batches()
    interactive = self.progress and is_terminal(log)
    t0 = time.time()
    started_at, running = self.step, None
    stop_at = t0 + 60 * t.max_minutes if t.max_minutes else None
    self.net.train()
    with StopRequest() as stop_request:
      while self.step < t.steps:
        lr = learning_rate(self.step, self.params)
        for group in self.opt.param_groups:
          group["lr"] = lr
        x, y = next(batches)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        weight_total = None
        if self.dist.active and t.peak_weight:
          weight_total = self.dist.all_sum([float((1.0 + (t.peak_weight / 0.5) * y).sum())], self.device)[0] \
            / self.world_size
        with autocast(self.device, self.bf16):
          prediction = self.model(x)
        loss = peak_weighted_mse(prediction, y, t.peak_weight, weight_total)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        out_of_time = (stop_at is not None and time.time() > stop_at) or self.step == t.stop_at_step \
          or stop_request.signal is not None
        # one all-reduce: the step's loss over all processes, and whether any must stop
        loss_sum, stop_votes = self.dist.all_sum([loss.item(), float(out_of_time)], self.device)
        step_loss = loss_sum / self.world_size
        out_of_time = stop_votes > 0
        running = step_loss if running is None else 0.95 * running + 0.05 * step_loss
        elapsed = time.time() - t0
        if self.progress and (interactive or self.step % t.progress_every == 0 or self.step == t.steps):
          rate = (self.step - started_at) / max(elapsed, 1e-9)
          eta = (t.steps - self.step) / max(rate, 1e-9)
          line = "step %d/%d  loss %.5f  lr %.2e  %.2f samples/s  ETA %s" % (
            self.step, t.steps, running, lr, rate * t.batch_size, format_seconds(eta))
          if interactive:
            print("\r" + line + "   ", end="", file=log, flush=True)
          else:
            print(line, file=log, flush=True)
        val = None
        if self.step % t.validate_every == 0 or self.step == t.steps:
          val = self.validation_loss(val_batches, n_val)
          if interactive:
            print("", file=log)
          print("step %d  train %.5f  validation %.5f  (%.0f s)" % (
            self.step, running, val, elapsed + self.elapsed_before), file=log, flush=True)
        if val is not None or self.step % 50 == 0:
          self.history.append({"step": self.step, "train_loss": running, "validation_loss": val,
                               "elapsed_s": round(self.elapsed_before + elapsed, 1)})
        if self.step % t.checkpoint_every == 0 or self.step == t.steps or out_of_time:
          self._checkpoint(elapsed)
        if out_of_time:
          if interactive:
            print("", file=log)
          why = "signal %d" % stop_request.signal if stop_request.signal is not None else "the time limit"
          print("Stopped at step %d (%s); continue with train.resume=%s" % (
            self.step, "stop_at_step" if self.step == t.stop_at_step else why, self.ckpt_path),
            file=log, flush=True)
          break
    if interactive:
      print("", file=log)
    self.train_seconds = self.elapsed_before + time.time() - t0
    del batches
    return self.step >= t.steps

  def finish(self):
    """Rank 0 writes <name>.pt and the card (with the final evaluation when
    all steps are done); returns the card (None on other ranks)."""
    if self.rank != 0:
      return None
    t, finished = self.params.train, self.step >= self.params.train.steps
    card = model_card(self.params, self.geometry, self.net, self.history, self.train_seconds, self.device,
                      finished=finished)
    card["training"]["processes"] = self.world_size
    card["training"]["data_path"] = t.data_path
    card["training"]["bf16_autocast"] = self.bf16
    if self.init_from:   # the whole lineage, so that a chain of fine-tunes still counts every example
      card["training"]["init_from"] = self.init_from
      card["training_data"]["examples_seen_with_init_from"] = (
        card["training_data"]["examples_seen"] + (self.init_from.get("examples_seen_in_all") or 0))
      card["wall_time_s_with_init_from"] = round(
        card["wall_time_s"] + (self.init_from.get("wall_time_s_in_all") or 0.0), 1)
    net_cpu = self.net.to("cpu").eval()
    if self.crystals:
      from cctbx_p2a import crystal_data
      crystal_data.card_for_crystals(card, self.crystals)
      if finished and t.evaluation_cases > 0:
        card["metrics"] = crystal_data.evaluate_network(network.Model(net_cpu, card), self.params,
                                                        t.evaluation_cases, log=self.log)
    elif finished and t.evaluation_cases > 0:
      from cctbx_p2a import evaluation
      model = network.Model(net_cpu, card)
      card["metrics"] = evaluation.evaluate_network(model, self.params, t.evaluation_cases, log=self.log)
    card = network.save(net_cpu, self.stem, card)
    print("Wrote %s.pt and %s.json" % (self.stem, self.stem), file=self.log)
    return card

  def close(self):
    self.dist.stop()


def run(params, log=sys.stdout, progress=True):
  """Train (or resume) a model; returns the model card written next to it
  (None on ranks other than 0)."""
  trainer = Trainer(params, log=log, progress=progress)
  try:
    trainer.train()
    return trainer.finish()
  finally:
    trainer.close()


def start_from_model(net, name_or_path, params, geometry):
  """Copy a trained model's weights into `net` (fine-tuning); returns what
  the card records about it.  The architecture and grids must match."""
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
  seen = model.card.get("training_data", {})
  return {"name": model.name, "sha256": model.card.get("sha256"),
          "examples_seen": seen.get("examples_seen"),   # its own run
          "examples_seen_in_all": seen.get("examples_seen_with_init_from", seen.get("examples_seen")),
          "wall_time_s_in_all": model.card.get("wall_time_s_with_init_from", model.card.get("wall_time_s"))}


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
                     "parameters": network.count_parameters(net),
                     "symmetric_output": bool(params.target.inverses), "upsample": geometry.upsample},
    "grid": geometry.as_dict(),
    "patterson": {"resolution_factor": params.patterson.resolution_factor,
                  "sharpening": params.patterson.sharpening,
                  "origin_peak_removal": params.patterson.origin_peak_removal,
                  "input_d_min": params.patterson.input_d_min,
                  "normalisation": "zero mean, unit RMS over the input window"},
    "target": {"sigma": params.target.sigma, "inverses": params.target.inverses,
               "voxel": geometry.output.voxel,
               "centre": params.target.centre},
    "training_data": {"seed": t.seed, "examples_seen": len(history) and history[-1]["step"] * t.batch_size,
                      "synthetic": phil_scope_dict(params, "synthetic")},
    "training": {"steps": t.steps, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                 "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
                 "loss": "peak-weighted MSE, peak_weight=%g" % t.peak_weight,
                 "finished": finished, "history": history},
    "domain": {"space_groups": ["P 1"],
               "n_atoms": [lo, hi],
               **domain_molecules(s),
               "d_min": list(s.d_min), "noise": list(s.noise), "completeness": list(s.completeness),
               "cell_edges_A": list(s.cell_edges) if s.random_cell else [min(cell[:3]), max(cell[:3])],
               "cell_angles_deg": list(s.cell_angles) if s.random_cell else [min(cell[3:]), max(cell[3:])]},
    "hardware": hardware_description(device),
    "wall_time_s": round(seconds, 1),
    "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                 "cctbx": getattr(cctbx, "__version__", "cctbx-base")},
  }


def domain_molecules(s):
  """What the card says the molecules were: the paper's points (elements, extent)
  or real molecules from cctbx_p2a.molecules (their element set)."""
  if getattr(s, "molecule_source", "points") == "molecules":
    from cctbx_p2a import molecules
    return {"molecule_source": "molecules",
            "elements": sorted(set(molecules.ORGANIC_ELEMENTS) | set(molecules.METAL_GEOMETRIES))}
  if getattr(s, "molecule_source", "points") == "store":   # the store's own molecules, and which store
    from cctbx_p2a import model_files
    from cctbx_p2a.molecule_store import MoleculeStore
    store = MoleculeStore.load(s.molecule_store)
    return {"molecule_source": "molecules",
            "elements": sorted({str(e) for m in store.molecules for e in m.elements}),
            "molecule_store": dict(store.summary(), path=os.path.basename(s.molecule_store),
                                   sha256=model_files.sha256_of(s.molecule_store))}
  return {"molecule_source": "points",
          "elements": [str(e) for e in s.elements] + ([s.heavy_element] if s.heavy_atom_fraction else []),
          "molecule_extent_A": 2 * s.extent}


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

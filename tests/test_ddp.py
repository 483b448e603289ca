"""Distributed training (torchrun, 2 CPU processes, gloo) and runs that are
stopped or killed: replicas stay identical, a checkpoint resumes with another
number of processes on the same curve, and no step is lost."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from data_factory import TINY_TRAINING  # noqa: E402

from cctbx_p2a import phil, train  # noqa: E402

TINY = dict(TINY_TRAINING, **{"train.batch_size": 4, "train.validate_every": 3,
                              "train.checkpoint_every": 2, "train.steps": 6})

RANK_SCRIPT = """
import cctbx_p2a, json, os, sys, torch
from cctbx_p2a import phil, train
settings = json.loads(sys.argv[1])
trainer = train.Trainer(phil.extract("train", "synthetic", "patterson", **settings), progress=False)
trainer.train()
torch.save(trainer.net.state_dict(), os.path.join(settings["train.output_dir"], "rank%d.pt" % trainer.rank))
trainer.finish()
trainer.close()
"""


def environment():
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  return env


def torchrun(tmp_path, n_processes, **settings):
  out = tmp_path / ("run%d" % len(list(tmp_path.iterdir())))
  out.mkdir()
  script = tmp_path / "rank_script.py"
  script.write_text(RANK_SCRIPT)
  settings = dict(TINY, **{"train.output_dir": str(out)}, **settings)
  done = subprocess.run(
    [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=%d" % n_processes,
     str(script), json.dumps(settings)],
    env=environment(), capture_output=True, text=True, timeout=240)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return out


def load(path):
  return torch.load(str(path), weights_only=False)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  return torchrun(tmp_path_factory.mktemp("ddp"), 2)


def test_two_gloo_processes_keep_identical_weights(two_process_run):
  out = two_process_run
  rank0, rank1 = load(out / "rank0.pt"), load(out / "rank1.pt")
  for name, tensor in rank0.items():
    assert torch.equal(tensor, rank1[name]), name
  ckpt = load(out / "p2a_model.ckpt")
  assert ckpt["step"] == 6 and ckpt["world_size"] == 2 and ckpt["examples_seen"] == 24
  card = json.load(open(out / "p2a_model.json"))
  assert card["training"]["processes"] == 2
  # the weights moved: this is a trained model, not the initial one
  initial = train.network.build("unet", 16, 8, 4).state_dict()
  assert any(not torch.allclose(initial[k], rank0[k]) for k in initial if initial[k].is_floating_point())


def test_resume_with_one_process_continues_the_two_process_curve(tmp_path, two_process_run):
  first = torchrun(tmp_path, 2, **{"train.stop_at_step": 3})
  ckpt = load(first / "p2a_model.ckpt")
  assert ckpt["step"] == 3
  params = phil.extract("train", "synthetic", "patterson", **dict(
    TINY, **{"train.output_dir": str(first), "train.resume": str(first / "p2a_model.ckpt"),
             "train.threads": 1}))
  train.run(params, progress=False)
  resumed, straight = load(first / "p2a_model.ckpt"), load(two_process_run / "p2a_model.ckpt")
  assert resumed["step"] == straight["step"] == 6
  # the same examples and the same whole-batch loss: only summation order differs
  for name, tensor in straight["model"].items():
    assert torch.allclose(tensor, resumed["model"][name], atol=2e-5), name
  assert [h["step"] for h in resumed["history"]] == [h["step"] for h in straight["history"]]
  for a, b in zip(resumed["history"], straight["history"]):
    assert a["validation_loss"] == pytest.approx(b["validation_loss"], rel=1e-4)


def cli(tmp_path, **settings):
  settings = dict(TINY, **{"train.output_dir": str(tmp_path), "train.threads": 1,
                           "train.progress_every": 1}, **settings)
  return [sys.executable, "-m", "cctbx_p2a.programs.train"] + ["%s=%s" % kv for kv in settings.items()]


def wait_for_checkpoint(process, path, min_step, timeout=120):
  start = time.time()
  while time.time() - start < timeout:
    if os.path.exists(path) and load(path)["step"] >= min_step:
      return
    assert process.poll() is None, "training ended before it was stopped"
    time.sleep(0.05)
  raise AssertionError("no checkpoint at step >= %d" % min_step)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_run_resumes_without_losing_steps(tmp_path, how):
  long_run = {"train.steps": 2000, "train.validate_every": 1000}
  ckpt = str(tmp_path / "cut" / "p2a_model.ckpt")
  os.makedirs(tmp_path / "cut")
  process = subprocess.Popen(cli(tmp_path / "cut", **long_run), env=environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  wait_for_checkpoint(process, ckpt, 2)
  process.send_signal(how)
  log, _ = process.communicate(timeout=60)
  stopped_at = load(ckpt)["step"]
  if how == signal.SIGTERM:   # the step under way is finished and saved: none lost
    assert process.returncode == 0, log[-2000:]
    last_logged = max(int(line.split()[1].split("/")[0]) for line in log.splitlines()
                      if line.startswith("step ") and "/" in line.split()[1])
    assert stopped_at == last_logged
    assert "Stopped at step %d" % stopped_at in log
    assert "\r" not in log   # not a terminal: plain lines
  end = stopped_at + 2
  # the next chunk, as a batch job would start it (the .pt of the last chunk is there)
  done = subprocess.run(cli(tmp_path / "cut", **long_run, **{"train.resume": ckpt, "train.stop_at_step": end}),
                        env=environment(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  assert "Resumed from %s at step %d" % (ckpt, stopped_at) in done.stdout
  straight = phil.extract("train", "synthetic", "patterson", **dict(
    TINY, **long_run, **{"train.output_dir": str(tmp_path / "straight"), "train.stop_at_step": end,
                         "train.threads": 1}))
  train.run(straight, progress=False)
  a, b = load(ckpt), load(tmp_path / "straight" / "p2a_model.ckpt")
  assert a["step"] == b["step"] == end
  for name, tensor in b["model"].items():
    assert torch.allclose(tensor, a["model"][name], atol=1e-6), name

"""Training: a tiny configuration learns, and an interrupted run resumes exactly."""
import io
import json
import os

import pytest
torch = pytest.importorskip("torch")  # the [train] extra; p2a.solve needs no torch

from libtbx.utils import Sorry

from data_factory import TINY_TRAINING

from cctbx_p2a import phil, train

TINY = dict(TINY_TRAINING, **{"train.batch_size": 2, "train.threads": 1})


def tiny_params(tmp_path, **extra):
  settings = dict(TINY, **{"train.output_dir": str(tmp_path)})
  settings.update(extra)
  return phil.extract("train", "synthetic", "patterson", **settings)


def test_loss_falls_and_card_is_complete(tmp_path):
  params = tiny_params(tmp_path, **{"train.steps": 40, "train.validate_every": 5})
  card = train.run(params, progress=False)
  val = [h["validation_loss"] for h in card["training"]["history"] if h["validation_loss"] is not None]
  assert len(val) == 8
  assert val[-1] < 0.7 * val[0]
  on_disk = json.load(open(tmp_path / "p2a_model.json"))
  for key in ("architecture", "grid", "training_data", "domain", "hardware", "wall_time_s",
              "versions", "sha256"):
    assert key in on_disk
  assert on_disk["training_data"]["seed"] == 1


def test_interrupted_run_resumes_to_the_same_state(tmp_path):
  straight = tiny_params(tmp_path / "a", **{"train.steps": 6, "train.validate_every": 100})
  train.run(straight, progress=False)
  first = tiny_params(tmp_path / "b", **{"train.steps": 6, "train.stop_at_step": 3,
                                         "train.validate_every": 100})
  train.run(first, progress=False)
  ckpt = str(tmp_path / "b" / "p2a_model.ckpt")
  assert torch.load(ckpt, weights_only=False)["step"] == 3
  resumed = tiny_params(tmp_path / "b", **{"train.steps": 6, "train.resume": ckpt,
                                           "train.validate_every": 100})
  train.run(resumed, progress=False)
  a = torch.load(str(tmp_path / "a" / "p2a_model.ckpt"), weights_only=False)
  b = torch.load(ckpt, weights_only=False)
  assert b["step"] == a["step"] == 6
  for name, tensor in a["model"].items():
    assert torch.allclose(tensor, b["model"][name], atol=1e-6), name


def test_fine_tuning_starts_from_the_given_model(tmp_path):
  base = tiny_params(tmp_path / "base", **{"train.steps": 3, "train.validate_every": 100})
  train.run(base, progress=False)
  source = str(tmp_path / "base" / "p2a_model.pt")
  tuned = tiny_params(tmp_path / "tuned", **{"train.steps": 1, "train.validate_every": 100,
                                            "train.init_from": source, "train.learning_rate": 0.0,
                                            "train.seed": 7})
  card = train.run(tuned, progress=False)
  start = torch.load(source, weights_only=True)["state_dict"]
  after = torch.load(str(tmp_path / "tuned" / "p2a_model.pt"), weights_only=True)["state_dict"]
  for name, tensor in start.items():   # learning rate 0: the weights are the source's
    assert torch.allclose(tensor, after[name]), name
  base_card = json.load(open(tmp_path / "base" / "p2a_model.json"))
  assert card["training"]["init_from"]["sha256"] == base_card["sha256"]
  # the card counts the whole lineage: the base's examples and time plus this run's
  assert card["training_data"]["examples_seen_with_init_from"] == (
    base_card["training_data"]["examples_seen"] + card["training_data"]["examples_seen"])
  assert card["wall_time_s_with_init_from"] >= base_card["wall_time_s"]


def test_fine_tuning_from_another_architecture_is_refused(tmp_path):
  from libtbx.utils import Sorry
  params = tiny_params(tmp_path, **{"train.steps": 1, "train.init_from": "paper"})
  with pytest.raises(Sorry, match="init_from=paper"):
    train.run(params, progress=False)


class Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_is_plain_lines_off_a_terminal_and_one_line_on_it(tmp_path):
  log = io.StringIO()
  train.run(tiny_params(tmp_path / "file", **{"train.steps": 6, "train.validate_every": 100,
                                               "train.progress_every": 2}), log=log)
  assert "\r" not in log.getvalue()
  progress = [line.split()[1] for line in log.getvalue().splitlines() if line.startswith("step ")]
  assert progress[:3] == ["2/6", "4/6", "6/6"]
  terminal = Terminal()
  train.run(tiny_params(tmp_path / "tty", **{"train.steps": 3, "train.validate_every": 100}), log=terminal)
  assert terminal.getvalue().count("\rstep ") == 3


def test_device_is_cuda_then_mps_then_cpu_and_bf16_only_on_gpus(monkeypatch):
  params = phil.extract("train", "synthetic", "patterson")
  if not torch.cuda.is_available():
    assert train.choose_device(params).type in ("cpu", "mps")
    with pytest.raises(Sorry, match="no CUDA GPU"):
      train.choose_device(phil.extract("train", "synthetic", "patterson", **{"train.device": "cuda"}))
  cpu = torch.device("cpu")
  assert not train.use_bf16(params, cpu)
  with pytest.raises(Sorry, match="mixed_precision=bf16"):
    train.use_bf16(phil.extract("train", "synthetic", "patterson", **{"train.mixed_precision": "bf16"}), cpu)
  monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
  assert train.choose_device(params).type == "mps"
  monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
  monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
  monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
  assert train.choose_device(params, local_rank=1) == torch.device("cuda", 1)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, monkeypatch):
  monkeypatch.setenv("WORLD_SIZE", "3")
  with pytest.raises(Sorry, match="multiple of 3"):
    train.Trainer(tiny_params(tmp_path, **{"train.steps": 1}))


def test_atom_count_calibration_of_empty_maps_says_so():
  """An untrained network's empty maps have no mass per atom: the card says
  so instead of dividing by zero (a NaN count error before)."""
  from cctbx_p2a import evaluation
  out = evaluation.atom_count_calibration([0.0, 0.0, 0.0], [6, 9, 12])
  assert out == {"atom_map_mass_per_atom": 0.0, "atom_count_exact": 0.0, "atom_count_rms_relative_error": None}
  out = evaluation.atom_count_calibration([12.0, 18.0, 24.0], [6, 9, 12])
  assert out["atom_map_mass_per_atom"] == 2.0 and out["atom_count_exact"] == 1.0

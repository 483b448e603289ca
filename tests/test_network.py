"""The network stage: shapes, exact centrosymmetry, and model files with cards."""
import json
import subprocess
import sys

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # the [train] extra; p2a.solve needs no torch
from libtbx.utils import Sorry

from cctbx_p2a import inference, model_files, network


@pytest.mark.parametrize("arch,n_in,n_out,channels", [("unet", 32, 24, 4), ("hurwitz2020", 16, 16, 4)])
def test_output_shape_and_inversion_symmetry(arch, n_in, n_out, channels):
  torch.manual_seed(0)
  net = network.build(arch, n_in, n_out, channels).eval()
  x = torch.randn(2, 1, n_in, n_in, n_in)
  with torch.no_grad():
    y = net(x)
  assert y.shape == (2, 1, n_out, n_out, n_out)
  assert torch.allclose(y, torch.flip(y, dims=(-3, -2, -1)), atol=1e-6)


def test_paper_architecture_size():
  """The paper's network at its published size: about 1.2 M parameters."""
  net = network.build("hurwitz2020", 40, 40, 20)
  assert 1.1e6 < network.count_parameters(net) < 1.3e6


def test_bad_geometry_is_a_sorry():
  with pytest.raises(Sorry):
    network.build("unet", 30, 24, 8)
  with pytest.raises(Sorry):
    network.build("hurwitz2020", 40, 24, 20)
  with pytest.raises(Sorry):
    network.build("transformer", 32, 24, 8)


def _card():
  return {"name": "t", "architecture": {"name": "unet", "channels": 4},
          "grid": {"input_n": 32, "output_n": 24, "voxel": 1.0}, "domain": {}}


def test_save_load_round_trip_and_sha256(tmp_path):
  torch.manual_seed(1)
  net = network.build("unet", 32, 24, 4)
  card = network.save(net, str(tmp_path / "m"), _card())
  assert card["sha256"] == network.sha256_of(str(tmp_path / "m.pt"))
  assert json.load(open(tmp_path / "m.json"))["sha256"] == card["sha256"]
  model = network.load(str(tmp_path / "m.pt"))
  x = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
  with torch.no_grad():
    expected = net.eval()(torch.from_numpy(x)[None, None])[0, 0].numpy()
  assert np.allclose(model.predict(x), expected, atol=1e-6)


def test_numpy_engine_gives_the_torch_output(tmp_path):
  """Phasing runs the unet from its .npz without torch; it must be the same network."""
  torch.manual_seed(2)
  net = network.build("unet", 32, 24, 4)
  network.save(net, str(tmp_path / "m"), _card())
  fast = model_files.load(str(tmp_path / "m"))
  assert isinstance(fast, inference.NumpyModel)
  x = np.random.default_rng(1).normal(size=(32, 32, 32)).astype(np.float32)
  expected = network.load(str(tmp_path / "m")).predict(x)
  assert np.abs(fast.predict(x) - expected).max() < 1e-5 * np.abs(expected).max() + 1e-6


def test_crystal_unet_upsamples_and_is_free_of_inversion(tmp_path):
  """The crystal network draws one copy of the molecule on 0.5 A voxels:
  its output is twice as fine and not symmetrised, in both engines."""
  torch.manual_seed(3)
  net = network.build("unet", 32, 48, 4, symmetric=False, upsample=2).eval()
  x = np.random.default_rng(2).normal(size=(32, 32, 32)).astype(np.float32)
  card = _card()
  card["architecture"].update(symmetric_output=False, upsample=2)
  card["grid"].update(output_n=48, output_voxel=0.5)
  network.save(net, str(tmp_path / "c"), card)
  torch_model, numpy_model = network.load(str(tmp_path / "c")), model_files.load(str(tmp_path / "c"))
  assert isinstance(numpy_model, inference.NumpyModel)
  y = torch_model.predict(x)
  assert y.shape == (48, 48, 48) and numpy_model.output_voxel == 0.5 and numpy_model.output_box_edge == 24
  assert not np.allclose(y, y[::-1, ::-1, ::-1], atol=1e-3)
  assert np.abs(numpy_model.predict(x) - y).max() < 1e-5 * np.abs(y).max() + 1e-6
  with pytest.raises(Sorry):
    network.build("hurwitz2020", 16, 32, 4, upsample=2)


def test_phasing_does_not_import_torch():
  """torch takes seconds to import; p2a.solve on a shipped unet must not need it."""
  code = ("import sys, cctbx_p2a; from cctbx_p2a import phil, synthetic; "
          "case = synthetic.make_case(5, phil.extract('synthetic').synthetic); "
          "r = cctbx_p2a.solve(case.f_obs, **{'solve.composition': 'C10'}); "
          "print(r.solved, 'torch' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr[-2000:]


def test_damaged_weights_are_refused(tmp_path):
  net = network.build("unet", 32, 24, 4)
  network.save(net, str(tmp_path / "m"), _card())
  with open(tmp_path / "m.pt", "ab") as f:
    f.write(b"junk")
  with pytest.raises(Sorry, match="sha256"):
    network.load(str(tmp_path / "m"))
  with open(tmp_path / "m.npz", "ab") as f:
    f.write(b"junk")
  with pytest.raises(Sorry, match="sha256"):
    model_files.load(str(tmp_path / "m"))


def test_missing_model_names_the_shipped_ones():
  with pytest.raises(Sorry, match="not found"):
    network.load("no_such_model")


def test_shipped_model_loads_with_a_complete_card_and_finds_the_atoms():
  """The default model ships in the package, its weights match the card's
  sha256 (load() checks it), and it solves a fixed simulated case."""
  import cctbx_p2a
  from cctbx_p2a import baselines, phil, synthetic
  model = cctbx_p2a.load_model()
  stem = model_files.resolve_model_path("default")
  assert model.card["sha256"] == network.sha256_of(stem + ".pt")
  assert model.card["numpy_weights"]["sha256"] == network.sha256_of(stem + ".npz")
  for key in ("architecture", "grid", "training_data", "domain", "metrics", "hardware",
              "wall_time_s", "versions"):
    assert key in model.card, key
  assert model.card["training_data"]["seed"] is not None
  case = synthetic.make_case(1234, phil.extract("synthetic").synthetic)
  result = cctbx_p2a.solve(case.f_obs, model=model, **{"solve.composition": "C10"})
  assert result.solved
  score = baselines.score_against_reference(case.xray_structure, result.xray_structure)
  assert score["solved"] and score["mean_error_A"] < 0.05

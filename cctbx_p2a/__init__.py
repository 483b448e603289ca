"""cctbx_p2a: Patterson to atoms.

Ab initio phasing of a small isolated molecule: the Patterson synthesis of the
measured amplitudes goes through a trained 3D convolutional network that draws
the atoms (Hurwitz 2020, arXiv:2003.13767); sites are read from that map, one
hand is chosen, and the structure is refined against the data with cctbx.

The import-order fix below must stay first: importing torch, gemmi, scipy or
matplotlib before cctbx's extensions crashes the interpreter.
"""
from cctbx_p2a import _import_order  # noqa: F401  (must be first)

__version__ = "0.1.0"


def solve(f_obs, params=None, model=None, log=None, **overrides):
  """Phase a miller.array of amplitudes or intensities; returns a
  cctbx_p2a.phasing.Result with .xray_structure, .phases, .r1, .cc, .show().
  See cctbx_p2a.phasing.solve for the parameters."""
  from cctbx_p2a import phasing
  return phasing.solve(f_obs, params=params, model=model, log=log, **overrides)


def load_model(name_or_path=None):
  """A shipped model by name ('default', 'paper') or a .pt path with its card,
  ready to .predict() (numpy weights when present; cctbx_p2a.network.load
  gives the torch model for training)."""
  from cctbx_p2a import model_files
  return model_files.load(name_or_path)

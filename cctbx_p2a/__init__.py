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
  """Phase a miller.array of amplitudes or intensities (or a
  cctbx_p2a.reflections.ObservedData); returns a cctbx_p2a.phasing.Result
  with .xray_structure, .phases, .r1, .cc, .solved and .show().

  Any p2a.solve parameter (phil/solve.phil and phil/reflections.phil) can be
  given as a keyword, spelt as on the command line:

    cctbx_p2a.solve(f_obs, composition="C10", model="paper")  # unique short names
    cctbx_p2a.solve(f_obs, solve__composition="C10")          # full name, '__' for '.'
    cctbx_p2a.solve(f_obs, **{"solve.composition": "C10"})    # full dotted name

  A name matching no parameter, or several (max_reflections is both
  sites.max_reflections and refinement.max_reflections), raises one Sorry
  naming the candidates.  `model` is a shipped model's name or a .pt path
  (the same as solve.model=), or a model object from load_model().
  `params`: extracted PHIL (cctbx_p2a.phasing.default_params()); keywords are
  applied on top of it.  `log`: a file-like object for the progress report.
  """
  import os
  from cctbx_p2a import phasing, phil
  if isinstance(model, (str, os.PathLike)):
    overrides = dict(overrides, model=os.fspath(model))  # the PHIL solve.model
    model = None
  if overrides:
    params = phil.apply_overrides(phil.master_phil(*phasing.SOLVE_SCOPES), params, overrides)
  return phasing.solve(f_obs, params=params, model=model, log=log)


def load_model(name_or_path=None):
  """A shipped model by name ('default', 'paper') or a .pt path with its card,
  ready to .predict() (numpy weights when present; cctbx_p2a.network.load
  gives the torch model for training)."""
  from cctbx_p2a import model_files
  return model_files.load(name_or_path)

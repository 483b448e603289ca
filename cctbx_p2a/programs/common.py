"""What every p2a program shares: turning file arguments into PHIL.

Reflection files are read by cctbx_p2a.reflections (where every input check
lives), not by the DataManager, which cannot read SHELX .hkl.  So a file named
on the command line becomes a PHIL assignment before iotbx's parser sees it:
data files -> input.data=..., .ins/.res -> reflections.symmetry_file=...,
models (.pdb/.cif/.res given as reference=) stay as written.
"""
from __future__ import annotations

import os

DATA_EXTENSIONS = (".mtz", ".hkl", ".sca", ".cif", ".hkl_cif", ".fcf", ".cv", ".xplor")
SYMMETRY_EXTENSIONS = (".ins", ".res")


def file_arguments_as_phil(args, data_key="input.data", symmetry_key="reflections.symmetry_file"):
  """['x.mtz', 'd_min=2'] -> ['input.data=x.mtz', 'd_min=2'].  A data file
  that does not exist is passed on too, so the reader says it is missing."""
  out = []
  for arg in args:
    ext = os.path.splitext(arg)[1].lower()
    if "=" in arg or arg.startswith("-") or not (os.path.isfile(arg) or ext in DATA_EXTENSIONS):
      out.append(arg)
      continue
    if ext in SYMMETRY_EXTENSIONS and symmetry_key:
      out.append("%s=%s" % (symmetry_key, arg))
    elif ext in DATA_EXTENSIONS and data_key:
      out.append("%s=%s" % (data_key, arg))
    else:
      out.append(arg)  # .phil/.eff files go to the DataManager as usual
  return out


def run(program_class, args=None, data_key="input.data", symmetry_key="reflections.symmetry_file"):
  """Console-script entry: file arguments to PHIL, then iotbx's run_program
  (which prints help without arguments, and a Sorry without a traceback)."""
  import sys
  from iotbx.cli_parser import run_program
  if args is None:
    args = sys.argv[1:]
  return run_program(program_class=program_class,
                     args=file_arguments_as_phil(args, data_key, symmetry_key))

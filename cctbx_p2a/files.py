"""Writing the files cctbx_p2a programs produce: structures and reflections.

Every writer here makes a file that :func:`cctbx_p2a.reflections.read` (data)
or iotbx (structures) reads back, so the programs share one set of file
conventions: MTZ columns FP,SIGFP or I,SIGI; SHELX .hkl with a small .ins
that holds the symmetry; coreCIF for structures and hkl-CIF.  Nothing is
overwritten unless asked: :func:`check_can_write` says which file is in the
way and how to proceed.
"""
from __future__ import absolute_import, division, print_function

import io
import os
import re

from libtbx.utils import Sorry


def check_can_write(file_names, overwrite=False):
  """Refuse (Sorry) before anything is written if a file exists and may not
  be replaced, or its folder does not exist."""
  for file_name in file_names:
    if os.path.exists(file_name) and not overwrite:
      raise Sorry("%s already exists. Remove it, choose another "
                  "output.prefix=, or set output.overwrite=True (--overwrite)."
                  % file_name)
    folder = os.path.dirname(os.path.abspath(file_name))
    if not os.path.isdir(folder):
      raise Sorry("Cannot write %s: folder %s does not exist. Create it or "
                  "choose another output.prefix=." % (file_name, folder))


def column_root_label(miller_array):
  """FP for amplitudes (FP,SIGFP), I for intensities (I,SIGI)."""
  if miller_array.is_xray_intensity_array():
    return "I"
  if miller_array.is_xray_amplitude_array():
    return "FP"
  raise Sorry("Only amplitudes or intensities can be written as observed "
              "data (observation type %s)." % miller_array.observation_type())


def write_mtz(miller_array, file_name, label=None):
  """MTZ with the array's crystal symmetry; columns FP,SIGFP or I,SIGI
  unless `label` (the column root) is given."""
  if label is None:
    label = column_root_label(miller_array)
  dataset = miller_array.as_mtz_dataset(column_root_label=label)
  dataset.mtz_object().write(file_name)
  return file_name


def cif_block_name(prefix):
  """A CIF data block name from a file prefix (examples/case 1 -> case_1)."""
  return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(prefix)) or "p2a"


def write_structure(xray_structure, prefix):
  """{prefix}.pdb and {prefix}.cif (coreCIF, block named after the prefix)
  of a structure; returns the file names."""
  pdb_file, cif_file = prefix + ".pdb", prefix + ".cif"
  with open(pdb_file, "w") as f:
    f.write(xray_structure.as_pdb_file())
  with open(cif_file, "w") as f:
    xray_structure.as_cif_simple(out=f, data_name=cif_block_name(prefix),
                                 format="coreCIF")
  return [pdb_file, cif_file]


def hklf_code(miller_array):
  """SHELX HKLF 4 for intensities (F^2), 3 for amplitudes."""
  return 4 if miller_array.is_xray_intensity_array() else 3


def write_shelx(miller_array, prefix, xray_structure=None, title="cctbx_p2a"):
  """{prefix}.hkl (HKLF 4 or 3) and {prefix}.ins with CELL, LATT/SYMM, SFAC,
  UNIT and HKLF: the symmetry a SHELX .hkl lacks (no atoms: it is a data
  set to be solved).  SFAC/UNIT come from `xray_structure` when given."""
  from iotbx.shelx.write_ins import LATT_SYMM
  column_root_label(miller_array)  # refuses other observation types
  hkl_file, ins_file = prefix + ".hkl", prefix + ".ins"
  hklf = hklf_code(miller_array)
  with open(hkl_file, "w") as f:
    # full_dynamic_range keeps weak data and small sigmas from rounding to 0
    miller_array.export_as_shelx_hklf(f, full_dynamic_range=True)
  sfac, unit = ["C"], [1]
  if xray_structure is not None:
    counts = xray_structure.scattering_type_registry().type_count_dict()
    sfac = sorted(counts)
    unit = [counts[e] for e in sfac]
  cs = miller_array.crystal_symmetry()
  latt = io.StringIO()
  LATT_SYMM(latt, cs.space_group())
  with open(ins_file, "w") as f:
    print("TITL %s" % title, file=f)
    print("CELL 0.71073 %s" % " ".join(
      "%.4f" % x for x in cs.unit_cell().parameters()), file=f)
    print("ZERR 1 0.001 0.001 0.001 0 0 0", file=f)
    f.write(latt.getvalue())
    print("SFAC %s" % " ".join(sfac), file=f)
    print("UNIT %s" % " ".join(str(n) for n in unit), file=f)
    print("HKLF %d" % hklf, file=f)
    print("END", file=f)
  return [hkl_file, ins_file]


def write_hkl_cif(miller_array, file_name, block="p2a"):
  """hkl-CIF (coreCIF: cell, symmetry and _refln_F_meas or
  _refln_F_squared_meas with sigmas)."""
  import iotbx.cif
  column_root_label(miller_array)
  model = iotbx.cif.model.cif()
  model[block] = iotbx.cif.miller_arrays_as_cif_block(
    miller_array, array_type="meas", format="coreCIF").cif_block
  with open(file_name, "w") as f:
    print(model, file=f)
  return file_name


def write_res(xray_structure, file_name, title="cctbx_p2a"):
  """SHELX .res of a solution (TITL, CELL, ZERR, LATT/SYMM, SFAC, UNIT, atoms,
  HKLF 4, END): ready to open in Olex2 or refine with SHELXL."""
  import iotbx.shelx.writer
  lines = list(iotbx.shelx.writer.generator(xray_structure, sort_scatterers=False,
                                            full_matrix_least_squares_cycles=4,
                                            title=title))
  text = "".join(l if l.endswith("\n") else l + "\n" for l in lines)
  if "HKLF" not in text:
    text += "HKLF 4\n"
  text += "END\n"
  with open(file_name, "w") as f:
    f.write(text)
  return file_name


def write_solution_mtz(f_obs, f_calc, file_name):
  """MTZ for Coot and refinement programs: FP,SIGFP, FC,PHIC (the model's
  structure factors) and FWT,PHWT (map coefficients m|Fo|exp(i phi_c), here
  F_obs scaled to F_calc with the model's phases)."""
  from cctbx.array_family import flex
  fo = f_obs
  if fo.sigmas() is None:
    fo = fo.customized_copy(sigmas=flex.double(fo.size(), 1.0))
  fo.set_observation_type_xray_amplitude()
  fc = f_calc.common_set(fo)
  fo = fo.common_set(fc)
  dataset = fo.as_mtz_dataset(column_root_label="FP")
  dataset.add_miller_array(fc, column_root_label="FC")
  scale = flex.sum(fo.data() * abs(fc).data()) / max(flex.sum(fo.data() * fo.data()), 1e-30)
  fwt = fo.customized_copy(data=fo.data() * scale, sigmas=None).phase_transfer(fc)
  dataset.add_miller_array(fwt, column_root_label="FWT")
  mtz = dataset.mtz_object()
  for column in mtz.columns():
    if column.label() == "PHIFC":
      column.set_label("PHIC")
    elif column.label() == "PHIFWT":
      column.set_label("PHWT")
  mtz.write(file_name)
  return file_name


def read_structure(file_name):
  """xray.structure from PDB, coreCIF or SHELX .res/.ins (a reference model)."""
  from cctbx import xray
  if not os.path.isfile(file_name):
    raise Sorry("Structure file not found: %s" % file_name)
  ext = os.path.splitext(file_name)[1].lower()
  try:
    if ext in (".pdb", ".ent"):
      import iotbx.pdb
      xs = iotbx.pdb.input(file_name=file_name).xray_structure_simple()
    elif ext == ".cif":
      structures = xray.structure.from_cif(file_path=file_name)
      xs = list(structures.values())[0] if isinstance(structures, dict) else structures
    elif ext in (".res", ".ins"):
      xs = xray.structure.from_shelx(filename=file_name)
    else:
      raise Sorry("Cannot read a structure from %s: give a .pdb, .cif or SHELX .res/.ins file."
                  % file_name)
  except Sorry:
    raise
  except Exception as e:
    raise Sorry("Could not read a structure from %s (%s: %s)." % (file_name, type(e).__name__, e))
  if xs is None or xs.scatterers().size() == 0:
    raise Sorry("No atoms in %s." % file_name)
  return xs

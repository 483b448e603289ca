"""Read observed diffraction data and prepare amplitudes for a Patterson.

Every input check of the data path lives here, so later stages can trust
``ObservedData.f_obs``: merged, non-anomalous xray amplitudes without
systematic absences, finite, non-negative, in the file's own symmetry.
Problems are reported as ``Sorry`` saying what is wrong and how to fix it.
"""
from __future__ import absolute_import, division, print_function

import io
import copy
import os
import re
import sys

from libtbx.utils import Sorry

_HKL_SUFFIXES = {"hklf3": 3, "amplitudes": 3, "hklf4": 4, "intensities": 4}


class ObservedData(object):
  """What was read and prepared, with a log of every change made to it.

  f_obs        merged, non-anomalous amplitudes without absences (for phasing)
  intensities  the same reflections as merged intensities, when the input
               held intensities (else None): what a SHELX .hkl should carry
  composition  asymmetric-unit contents {element: count} from the SFAC/UNIT
               of a SHELX .ins/.res (UNIT / Z, Z = the space group's order_z),
               or None; counts are int when whole, else float (Z' < 1)
  notes        every change made to the data, in order (for log and JSON)
  warnings     what a crystallographer should look at: absences against the
               space group, severe incompleteness, twinning, pseudo-symmetry.
               Flags only: nothing is refused here.
  merging      {n_observations, n_unique, r_int} when equivalents were merged
  absences     {n, mean_i_over_sigma, max_i_over_sigma, ...} of the
               systematically absent reflections found (and removed)
  twinning     intensity statistics and twin-law tests (see check_twinning)
  wavelength   from the SHELX .ins/.res CELL or the MTZ data set, else None
  """

  def __init__(self, f_obs, intensities=None, source="miller_array",
               notes=None, composition=None, warnings=None, merging=None,
               absences=None, twinning=None, wavelength=None):
    self.f_obs = f_obs
    self.intensities = intensities
    self.source = source
    self.notes = list(notes or [])
    self.composition = composition
    self.warnings = list(warnings or [])
    self.merging = merging
    self.absences = absences
    self.twinning = twinning or {}
    self.wavelength = wavelength

  def as_json_dict(self):
    """What was read and checked, for a program's JSON summary."""
    f = self.f_obs
    return {
      "source": self.source,
      "space_group": str(f.space_group_info()),
      "unit_cell": list(f.unit_cell().parameters()),
      "wavelength": self.wavelength,
      "d_min": f.d_min(), "n_unique": f.size(),
      "completeness": f.completeness(),
      "observations": "intensities" if self.intensities is not None else "amplitudes",
      "composition": self.composition, "merging": self.merging,
      "absences": self.absences, "twinning": self.twinning,
      "notes": self.notes, "warnings": self.warnings,
    }

  def observations_for_refinement(self):
    """The merged data a SHELX .hkl should hold: intensities (HKLF 4) when
    the input held intensities, else amplitudes (HKLF 3)."""
    return self.intensities if self.intensities is not None else self.f_obs

  def show(self, out=sys.stdout):
    f = self.f_obs
    cs = f.crystal_symmetry()
    d_max, d_min = f.d_max_min()
    print("Observed data: %s" % self.source, file=out)
    print("  unit cell:     %s" % (
      "(%s)" % ", ".join("%.4g" % x for x in cs.unit_cell().parameters())),
      file=out)
    print("  space group:   %s" % cs.space_group_info(), file=out)
    print("  resolution:    %.3f - %.3f A" % (d_max, d_min), file=out)
    no_sigmas = "" if f.sigmas() is not None else " (no sigmas)"
    if self.intensities is not None:  # say what was read, then what it became
      print("  reflections:   %d unique intensities read, used as %d amplitudes%s "
            "(conversion below)" % (self.intensities.size(), f.size(), no_sigmas), file=out)
    else:
      print("  reflections:   %d unique amplitudes read%s" % (f.size(), no_sigmas), file=out)
    print("  completeness:  %.1f %%" % (100 * f.completeness()), file=out)
    for note in self.notes:
      print("  - %s" % note, file=out)
    for warning in self.warnings:
      print("  WARNING: %s" % warning, file=out)


_DEFAULTS = None


def default_params(**overrides):
  """Extracted reflections parameters; ``overrides`` as in phil.extract.
  The defaults are parsed once (training prepares thousands of arrays)."""
  global _DEFAULTS
  from cctbx_p2a import phil
  if overrides:
    return phil.extract("reflections", **overrides).reflections
  if _DEFAULTS is None:
    _DEFAULTS = phil.extract("reflections").reflections
  return copy.deepcopy(_DEFAULTS)


# --------------------------------------------------------------------------
# read()

def read(file_name, params=None):
  """Read one amplitude or intensity array from a reflection file and
  prepare() it.  SHELX .hkl takes its symmetry from params or a .ins/.res."""
  if params is None:
    params = default_params()
  path, hklf = _split_hklf_suffix(file_name, params.hklf)
  if not os.path.exists(path):
    raise Sorry("Reflection file not found: %s. Check the path and the "
                "current directory (%s)." % (path, os.getcwd()))
  if not os.path.isfile(path):
    raise Sorry("%s is not a file. Give the path of a reflection file "
                "(MTZ, hkl-CIF, scalepack, SHELX .hkl)." % path)
  name = os.path.basename(path)
  embedded = _embedded_shelx_files(path)
  if embedded is not None:
    return _read_embedded(path, embedded, params)
  file_type = _open(path).file_type()
  if file_type is None:
    raise Sorry("%s is not a recognised reflection file. Give an MTZ, "
                "hkl-CIF, scalepack or SHELX .hkl file." % name)
  symmetry, symmetry_note, hklf, sym_file = _symmetry_from_files(
    path, file_type, hklf, params)
  if file_type == "shelx_hklf":
    reader = _open("%s=hklf%d" % (path, hklf))
  else:
    reader = _open(path)
  try:
    arrays = reader.as_miller_arrays(crystal_symmetry=symmetry)
  except Sorry:
    raise
  except Exception as e:
    raise Sorry("Could not read the reflections in %s (%s: %s). Check that "
                "the file is complete and of the type its extension says."
                % (name, type(e).__name__, e))
  if file_type == "cif":
    _type_core_cif_arrays(arrays)
  array = _choose_array(arrays, name, params.labels)
  source = "%s:%s" % (name, _label_string(array))
  reindexed = None
  if file_type == "shelx_hklf" and sym_file is not None and _is_shelx_file(sym_file):
    array, reindexed = _apply_hklf_matrix(array, sym_file)
  if ((array.unit_cell() is None and params.unit_cell is None) or
      (array.space_group_info() is None and params.space_group is None)):
    stem = os.path.basename(os.path.splitext(path)[0])
    raise Sorry("No crystal symmetry for %s: give unit_cell= and "
                "space_group=, or symmetry_file= (a SHELX .ins/.res or "
                "another file with cell and space group)%s." % (
                  name, "; %s.ins or %s.res next to the .hkl is used "
                  "automatically" % (stem, stem)
                  if file_type == "shelx_hklf" else ""))
  result = prepare(array, params=params, source=source)
  if reindexed is not None:
    result.notes.insert(0, reindexed)
  if symmetry_note is not None:
    result.notes.insert(0, symmetry_note)
  wavelength = getattr(array.info(), "wavelength", None)
  if wavelength is not None and wavelength > 0:
    result.wavelength = wavelength
  if sym_file is not None and _is_shelx_file(sym_file):
    result.composition, note = composition_from_shelx(
      sym_file, result.f_obs.space_group())
    if note is not None:
      result.notes.append(note)
    result.wavelength = _shelx_wavelength(sym_file) or result.wavelength
  elif file_type == "cif" or (sym_file is not None and sym_file.lower().endswith(".cif")):
    result.composition, note = composition_from_cif(
      sym_file if sym_file is not None else path, result.f_obs.space_group())
    if note is not None:
      result.notes.append(note)
  return result


#: CIF items that carry a SHELXL deposition's own files (CIF1 and DDLm names)
_EMBEDDED_ITEMS = {"hkl": ("_shelx_hkl_file", "_shelx.hkl_file"),
                   "res": ("_shelx_res_file", "_shelx.res_file")}


def _embedded_shelx_files(path):
  """{"hkl": text, "res": text or None, "block": name} when `path` is a CIF
  that embeds the SHELX .hkl (_shelx_hkl_file), as every CIF written by
  SHELXL since 2014 and deposited with the CSD, COD or IUCr journals does;
  else None.  Why: such a CIF holds no reflection loop, so iotbx's readers
  see no reflections in it, yet it is the form in which measured data are
  published."""
  if not path.lower().endswith(".cif"):
    return None
  with open(path, errors="replace") as f:
    text = f.read()
  if not any(item in text for item in _EMBEDDED_ITEMS["hkl"]):
    return None
  import iotbx.cif
  try:
    model = iotbx.cif.reader(input_string=text, strict=False).model()
  except Exception as e:
    raise Sorry("%s embeds a SHELX .hkl (_shelx_hkl_file) but is not valid CIF (%s: %s). Extract "
                "the .hkl and .res from it, or fix the CIF." % (os.path.basename(path),
                                                                type(e).__name__, e))
  for block_name, block in model.items():
    hkl = next((block[k] for k in _EMBEDDED_ITEMS["hkl"] if k in block), None)
    if hkl is not None:
      res = next((block[k] for k in _EMBEDDED_ITEMS["res"] if k in block), None)
      return {"hkl": str(hkl), "res": None if res is None else str(res), "block": block_name}
  return None


def _read_embedded(path, embedded, params):
  """read() of the .hkl embedded in a CIF, with the embedded .res for the
  symmetry, HKLF code and composition (else the CIF's own cell, space group
  and _chemical_formula_sum)."""
  import tempfile
  name = os.path.basename(path)
  stem = os.path.splitext(name)[0]
  with tempfile.TemporaryDirectory() as d:
    hkl_path = os.path.join(d, stem + "_shelx_hkl_file.hkl")
    with open(hkl_path, "w") as f:
      f.write(embedded["hkl"].strip("\n") + "\n")
    inner = copy.deepcopy(params)
    if params.symmetry_file is None:
      if embedded["res"] is not None:
        inner.symmetry_file = os.path.join(d, stem + "_shelx_res_file.res")
        with open(inner.symmetry_file, "w") as f:
          f.write(embedded["res"].strip("\n") + "\n")
      else:
        inner.symmetry_file = path
    result = read(hkl_path, inner)
  said = {os.path.basename(hkl_path): "%s (_shelx_hkl_file)" % name,
          stem + "_shelx_res_file.res": "%s (_shelx_res_file)" % name}
  def own_names(text):
    for temp, real in said.items():
      text = text.replace(temp, real)
    return text
  result.notes = [own_names(n) for n in result.notes]
  result.warnings = [own_names(w) for w in result.warnings]
  result.source = own_names(result.source)
  result.notes.insert(0, "reflections from the SHELX .hkl embedded in %s (data block %s)%s" % (
    name, embedded["block"], ", symmetry and composition from its embedded .res"
    if embedded["res"] is not None and params.symmetry_file is None else ""))
  return result


def composition_from_cif(file_name, space_group):
  """Asymmetric-unit contents from a CIF's _chemical_formula_sum and
  _cell_formula_units_Z (or their DDLm names, _chemical_formula.sum and
  _cell.formula_units_Z): the formula times Z over the space group's order_z.
  Returns ({element: count} or None, note or None), as composition_from_shelx."""
  import iotbx.cif
  name = os.path.basename(file_name)
  try:
    model = iotbx.cif.reader(file_path=file_name, strict=False).model()
  except Exception:
    return None, None
  def item(block, names):
    return next((block[k] for k in names if k in block), None)
  for block in model.values():
    formula = item(block, ("_chemical_formula_sum", "_chemical_formula.sum"))
    z = item(block, ("_cell_formula_units_Z", "_cell.formula_units_Z"))
    if formula is None:
      continue
    formula = str(formula).strip()
    if formula in ("?", ".", ""):
      return None, None
    counts = {}
    for word in formula.replace("'", " ").split():
      m = re.match(r"^([A-Za-z]{1,2})([0-9]*\.?[0-9]*)$", word)
      element = _element_symbol(m.group(1)) if m else None
      if element is None:
        return None, ("%s: _chemical_formula_sum '%s' is not a formula of element symbols; "
                      "composition not taken from the file" % (name, formula))
      counts[element] = counts.get(element, 0) + (float(m.group(2)) if m.group(2) else 1.0)
    try:
      z = float(str(z).split("(")[0])
    except (TypeError, ValueError):
      return None, ("%s: _chemical_formula_sum without _cell_formula_units_Z; composition not "
                    "taken (give composition=)" % name)
    composition = {}
    for element, n in counts.items():
      n = n * z / space_group.order_z()
      if n > 0:
        composition[element] = int(round(n)) if abs(n - round(n)) < 1e-6 else round(n, 3)
    if not composition:
      return None, None
    return composition, "composition from %s: _chemical_formula_sum x Z / %d (Z = %g) = %s" % (
      name, space_group.order_z(), z, composition_formula(composition, include_hydrogen=True))
  return None, None


def _shelx_wavelength(file_name):
  """The wavelength on the CELL card of a SHELX .ins/.res, or None."""
  for keyword, words in _shelx_instructions(file_name):
    if keyword == "CELL" and words and _is_number(words[0]):
      return float(words[0]) if float(words[0]) > 0 else None
  return None


def _is_shelx_file(file_name):
  return os.path.splitext(file_name)[1].lower() in (".ins", ".res")


def _shelx_instructions(file_name, stop_at=("HKLF", "END")):
  """(keyword, [arguments]) of a SHELX .ins/.res, '=' continuations joined,
  comments (REM, '!') dropped; reading stops at the first of stop_at
  (HKLF/END: the HKLF card itself is left out unless only END stops it)."""
  with open(file_name, errors="replace") as f:
    lines = f.read().splitlines()
  joined, pending = [], ""
  for line in lines:
    line = line.split("!", 1)[0].rstrip()
    if pending:
      line = pending + " " + line.strip()
      pending = ""
    if line.endswith("="):
      pending = line[:-1]
      continue
    joined.append(line)
  result = []
  for line in joined:
    words = line.split()
    if not words or line[:1].isspace():
      continue
    keyword = words[0].upper()
    if keyword in stop_at:
      break
    result.append((keyword, words[1:]))
  return result


def _element_symbol(word):
  """'CL' / 'cl' / 'Cl' -> 'Cl' when it is an element, else None."""
  from cctbx.eltbx import tiny_pse
  if not re.match(r"^[A-Za-z]{1,2}$", word):
    return None
  symbol = word[0].upper() + word[1:].lower()
  try:
    tiny_pse.table(symbol)
  except RuntimeError:
    return None
  return symbol


def composition_from_shelx(file_name, space_group):
  """Asymmetric-unit contents from SFAC/UNIT of a SHELX .ins/.res: UNIT
  counts the unit cell, so each count is divided by Z = the space group's
  order_z (its number of general positions).  Returns ({element: count} or
  None, note or None).  Both SFAC forms are read: 'SFAC C H N O' and the
  long form 'SFAC Fe a1 b1 ... ' (one element and its coefficients)."""
  name = os.path.basename(file_name)
  sfac, unit, zerr = [], None, None
  for keyword, words in _shelx_instructions(file_name):
    if keyword == "REM" and "SFAC/UNIT are placeholders" in " ".join(words):
      return None, "%s: SFAC/UNIT are placeholders; no composition taken" % name
    if keyword == "SFAC":
      if len(words) > 2 and all(_is_number(w) for w in words[1:]):
        words = words[:1]  # long form: one label, then numbers
      for w in words:
        element = _element_symbol(w)
        if element is None:
          return None, ("%s: SFAC %s is not an element; composition not "
                        "taken from the file" % (name, w))
        sfac.append(element)
    elif keyword == "UNIT":
      unit = words
    elif keyword == "ZERR" and words and _is_number(words[0]):
      zerr = float(words[0])
  if not sfac or unit is None:
    return None, None
  if len(unit) != len(sfac) or not all(_is_number(u) for u in unit):
    return None, ("%s: UNIT (%s) does not match SFAC (%s); composition not "
                  "taken from the file" % (name, " ".join(unit), " ".join(sfac)))
  z = space_group.order_z()
  composition = {}
  for element, count in zip(sfac, unit):
    n = float(count) / z
    if n <= 0:
      continue
    n = int(round(n)) if abs(n - round(n)) < 1e-6 else round(n, 3)
    composition[element] = composition.get(element, 0) + n
  if not composition:
    return None, "%s: UNIT gives no atoms; composition not taken" % name
  note = "composition from %s: UNIT / Z (Z = %d) = %s" % (
    name, z, composition_formula(composition, include_hydrogen=True))
  if zerr is not None and abs(zerr - z) > 1e-6:
    note += " (ZERR gives Z = %g, so Z' = %g)" % (zerr, zerr / z)
  return composition, note


def composition_formula(composition, include_hydrogen=False):
  """{'C': 10, 'H': 10, 'N': 4} -> 'C10N4' (H dropped unless asked), the
  form composition= takes; counts that are not whole are written as %g."""
  parts = []
  for element, n in composition.items():
    if element in ("H", "D") and not include_hydrogen:
      continue
    parts.append("%s%s" % (element, "%g" % n))
  return "".join(parts)


def _is_number(word):
  try:
    float(word)
  except ValueError:
    return False
  return True


def _split_hklf_suffix(file_name, hklf):
  """Accept iotbx's "x.hkl=hklf3" / "=amplitudes" convention as well."""
  if hklf not in (None, 3, 4):
    raise Sorry("hklf=%s is not supported: use hklf=4 (intensities, F^2) or "
                "hklf=3 (amplitudes, F)." % hklf)
  head, sep, tail = file_name.rpartition("=")
  if sep and tail.lower() in _HKL_SUFFIXES:
    return head, _HKL_SUFFIXES[tail.lower()]
  return file_name, hklf


def _open(path):
  from iotbx.reflection_file_reader import any_reflection_file
  try:
    return any_reflection_file(path)
  except Sorry as e:
    raise Sorry("Could not read %s: %s" % (path, e)) from None
  except Exception as e:
    raise Sorry("Could not read %s (%s: %s). Is it a complete MTZ, hkl-CIF, "
                "scalepack or SHELX .hkl file?" % (
                  os.path.basename(path), type(e).__name__, e))


def _symmetry_from_files(path, file_type, hklf, params):
  """Crystal symmetry from params.symmetry_file, or for SHELX .hkl from
  <stem>.ins/.res next to it.  Returns (symmetry or None, note or None,
  hklf, the symmetry file or None): an unset hklf is taken from the .ins
  HKLF line, else 4."""
  sym_file = params.symmetry_file
  if sym_file is None and file_type == "shelx_hklf":
    stem = os.path.splitext(path)[0]
    for ext in (".ins", ".res", ".INS", ".RES"):
      if os.path.isfile(stem + ext):
        sym_file = stem + ext
        break
  if sym_file is None:
    return None, None, 4 if hklf is None else hklf, None
  if not os.path.isfile(sym_file):
    raise Sorry("symmetry_file not found: %s. Check the path, or give "
                "unit_cell= and space_group= instead." % sym_file)
  from iotbx import crystal_symmetry_from_any
  try:
    symmetry = crystal_symmetry_from_any.extract_from(sym_file)
  except Exception:
    symmetry = None
  if (symmetry is None or symmetry.unit_cell() is None
      or symmetry.space_group_info() is None):
    raise Sorry("No crystal symmetry (cell and space group) in %s. Give a "
                "SHELX .ins/.res with CELL/LATT/SYMM, or unit_cell= and "
                "space_group=." % sym_file)
  if file_type == "shelx_hklf":
    code = _shelx_hklf_code(sym_file)
    if hklf is None:
      hklf = code if code in (3, 4) else 4
    if code in (3, 4) and code != hklf:
      raise Sorry("%s says HKLF %d but the data are read as HKLF %d. Set "
                  "hklf=%d (or fix the HKLF line)." % (
                    os.path.basename(sym_file), code, hklf, code))
    return (symmetry, "symmetry from %s (HKLF %d)" % (os.path.basename(sym_file), hklf),
            hklf, sym_file)
  # only fills in what the file lacks
  return symmetry, None, 4 if hklf is None else hklf, sym_file


def _shelx_hklf_matrix(file_name):
  """The 3x3 index matrix of the HKLF card (HKLF n s r11 ... r33), or None
  when there is none or it is the identity."""
  import numpy as np
  for keyword, words in _shelx_instructions(file_name, stop_at=("END",)):
    if keyword == "HKLF" and len(words) >= 11 and all(_is_number(w) for w in words[:11]):
      matrix = np.array([float(w) for w in words[2:11]]).reshape(3, 3)
      return None if np.allclose(matrix, np.eye(3)) else matrix
  return None


def _apply_hklf_matrix(array, sym_file):
  """(array, note or None): the indices transformed as SHELXL does, h' =
  r11 h + r12 k + r13 l, ... (the cell and symmetry of the .ins belong to
  the transformed indices).  Why: a .res written after a change of cell
  keeps the data as measured and says the change on its HKLF card."""
  import numpy as np
  from cctbx.array_family import flex
  matrix = _shelx_hklf_matrix(sym_file)
  if matrix is None:
    return array, None
  name = os.path.basename(sym_file)
  if np.linalg.det(matrix) <= 0:
    raise Sorry("%s: the HKLF matrix %s has a determinant <= 0, which SHELXL refuses too. "
                "Fix the HKLF card." % (name, " ".join("%g" % x for x in matrix.ravel())))
  hkl = np.array(array.indices(), dtype=float) @ matrix.T
  if not np.allclose(hkl, np.round(hkl), atol=1e-3):
    raise Sorry("%s: the HKLF matrix %s makes non-integer indices from the .hkl. Check the "
                "matrix (rows r11 r12 r13, ...)." % (name, " ".join("%g" % x for x in matrix.ravel())))
  indices = flex.miller_index([tuple(int(v) for v in row) for row in np.round(hkl)])
  note = "indices transformed by the HKLF matrix of %s (%s), as SHELXL does" % (
    name, " ".join("%g" % x for x in matrix.ravel()))
  return array.customized_copy(indices=indices).set_observation_type(array), note


def _shelx_hklf_code(file_name):
  try:
    with open(file_name) as f:
      for line in f:
        m = re.match(r"\s*HKLF\s+([+-]?\d+)", line, re.IGNORECASE)
        if m:
          return abs(int(m.group(1)))
  except (IOError, UnicodeDecodeError):
    pass
  return None


_CORE_CIF_TYPES = (
  (re.compile(r"_refln_F_(meas|calc)$", re.IGNORECASE), "amplitude"),
  (re.compile(r"_refln_intensity_(meas|calc)$", re.IGNORECASE), "intensity"))


def _type_core_cif_arrays(arrays):
  """iotbx.cif types mmCIF _refln.F_meas and coreCIF _refln_F_squared_meas
  but leaves coreCIF _refln_F_meas / _refln_intensity_meas untyped."""
  from cctbx.array_family import flex
  for a in arrays:
    if a.observation_type() is not None or not isinstance(a.data(), flex.double):
      continue
    for label in (a.info().labels or [])[1:2]:  # [block, data, sigma]
      for pattern, kind in _CORE_CIF_TYPES:
        if pattern.match(label):
          getattr(a, "set_observation_type_xray_" + kind)()


def _label_string(array):
  info = array.info()
  if info is None:
    return "?"
  return info.label_string()


def _kind(array):
  if array.is_xray_amplitude_array():
    return "amplitudes"
  if array.is_xray_intensity_array():
    return "intensities"
  if array.is_complex_array():
    return "complex"
  return "other"


def _describe(arrays):
  return "; ".join("%s (%s)" % (_label_string(a), _kind(a)) for a in arrays)


def _matches(array, wanted):
  """labels=FP, labels=FP,SIGFP and labels=I (for I,SIGI) all match."""
  info = array.info()
  if info is None:
    return False
  parts = [p.strip() for p in wanted.split(",") if p.strip()]
  labels = list(info.labels or [])
  return len(parts) > 0 and all(p in labels for p in parts)


def _short_label(array, arrays):
  """The first label when it alone picks the array (FP), else the full
  label string (hkl-CIF: the first label is the data block name)."""
  first = array.info().labels[0]
  if [_matches(a, first) for a in arrays].count(True) == 1:
    return first
  return _label_string(array)


def _choose_array(arrays, name, labels):
  candidates = [a for a in arrays
                if a.is_xray_amplitude_array() or a.is_xray_intensity_array()]
  if labels:
    wanted = ",".join(labels)
    hits = [a for a in arrays if _matches(a, wanted)]
    if len(hits) == 0:
      raise Sorry("labels=%s not found in %s. Available: %s" % (
        wanted, name, _describe(arrays) or "none"))
    if len(hits) > 1:
      raise Sorry("labels=%s matches several arrays in %s: %s. Give the full "
                  "label string, e.g. labels=%s" % (
                    wanted, name, _describe(hits), _label_string(hits[0])))
    if not any(hits[0] is c for c in candidates):  # == is elementwise
      raise Sorry("labels=%s in %s is not an amplitude or intensity array "
                  "(%s). Choose one of: %s" % (
                    wanted, name, _describe(hits),
                    _describe(candidates) or "none"))
    return hits[0]
  if len(candidates) == 0:
    raise Sorry("No amplitude or intensity array in %s (found: %s). Give a "
                "file with F/SIGF or I/SIGI columns." % (
                  name, _describe(arrays) or "no reflection data"))
  if len(candidates) > 1:
    raise Sorry("Several amplitude/intensity arrays in %s: %s. Choose one "
                "with labels=%s" % (
                  name, ", ".join(_label_string(a) for a in candidates),
                  _short_label(candidates[0], arrays)))
  return candidates[0]


# --------------------------------------------------------------------------
# prepare()

def prepare(miller_array, params=None, source="miller_array"):
  """Check an amplitude or intensity array and turn it into merged,
  non-anomalous amplitudes without systematic absences."""
  from cctbx import miller
  if params is None:
    params = default_params()
  if not isinstance(miller_array, miller.array):
    raise Sorry("prepare() needs a cctbx.miller.array of amplitudes or "
                "intensities, not %s." % type(miller_array).__name__)
  a = miller_array
  notes = []
  if a.is_complex_array():
    raise Sorry("%s holds complex structure factors. Pass amplitudes: "
                "f.amplitudes().set_observation_type_xray_amplitude()" % source)
  if not (a.is_xray_amplitude_array() or a.is_xray_intensity_array()):
    raise Sorry("%s is neither amplitudes nor intensities (observation type "
                "%s). Call .set_observation_type_xray_amplitude() or "
                ".set_observation_type_xray_intensity() on it first."
                % (source, a.observation_type()))
  a = a.deep_copy()  # what we hand back must not be the caller's array
  is_intensity = a.is_xray_intensity_array()
  what = "intensities" if is_intensity else "amplitudes"
  a = _apply_symmetry(a, params, source, notes)
  if params.d_min:
    n_all, d_all = a.size(), a.d_min()
    a = a.resolution_filter(d_min=params.d_min)
    notes.append("data cut to %.2f A (reflections.d_min): %d of %d %s kept (they reach %.2f A)" % (
      params.d_min, a.size(), n_all, what, d_all))
  _check_finite(a, source, what)
  if not is_intensity:
    _check_non_negative(a, source)
  a = _clean_sigmas(a, notes)
  warnings = []
  a, merging = _merge(a, notes, what)
  a, absences = _remove_absences(a, params, notes, warnings)
  _check_count(a, params, source, "after merging")
  intensities = None
  if is_intensity:
    intensities = a
    f_obs = _intensities_as_amplitudes(a, params, source, notes, warnings)
    _check_count(f_obs, params, source, "after %s" % (
      "French-Wilson" if params.intensities_to_amplitudes == "french_wilson"
      else "conversion"))
  else:
    f_obs = a
  f_obs.set_observation_type_xray_amplitude()
  twinning = {}
  if params.crystal_checks:
    _check_completeness(f_obs, params, warnings)
    twinning = check_twinning(a, params, notes, warnings)
  return ObservedData(f_obs=f_obs, intensities=intensities, source=source,
                      notes=notes, warnings=warnings, merging=merging,
                      absences=absences, twinning=twinning)


def _merge(a, notes, what):
  """Symmetry-equivalent and Friedel-related observations averaged (sigma
  weighted, cctbx merge_equivalents) into one non-anomalous set; R_int
  (sum |I - <I>| / sum I over the merged groups) is reported when
  observations were merged.  Anomalous differences are not used here."""
  merging = None
  if not a.is_unique_set_under_symmetry():
    n_obs = a.size()
    friedel = " (Friedel mates averaged)" if a.anomalous_flag() else ""
    merged = a.as_non_anomalous_array().merge_equivalents()
    try:
      r_int = merged.r_int()
    except (RuntimeError, ZeroDivisionError):
      r_int = None
    a = merged.array()
    merging = {"n_observations": n_obs, "n_unique": a.size(), "r_int": r_int}
    notes.append("merged %d observations into %d unique %s%s%s"
                 % (n_obs, a.size(), what,
                    "" if r_int is None else " (R_int = %.3f)" % r_int, friedel))
  elif a.anomalous_flag():
    n_obs = a.size()
    a = a.average_bijvoet_mates()
    notes.append("averaged Bijvoet mates: %d -> %d %s"
                 % (n_obs, a.size(), what))
  return a, merging


def _remove_absences(a, params, notes, warnings):
  """Count the reflections the space group makes systematically absent,
  report their mean I/sigma(I) (intensities; amplitudes are squared,
  sigma(F^2) = 2 F sigma(F)), warn when that mean exceeds
  params.absences_i_over_sigma_warning (the data contradict the space
  group), then remove them."""
  from cctbx.array_family import flex
  flags = a.sys_absent_flags().data()
  n_absent = flags.count(True)
  if n_absent == 0:
    return a, {"n": 0}
  absent = a.select(flags)
  absences = {"n": n_absent}
  if absent.sigmas() is not None:
    if absent.is_xray_intensity_array():
      i, sig = absent.data(), absent.sigmas()
    else:
      i = absent.data() * absent.data()
      sig = 2 * absent.data() * absent.sigmas()
    ok = sig > 0
    ratio = i.select(ok) / sig.select(ok)
    if ratio.size():
      absences["mean_i_over_sigma"] = flex.mean(ratio)
      absences["max_i_over_sigma"] = flex.max(ratio)
      absences["n_above_3_sigma"] = (ratio > 3).count(True)
  sg = str(a.space_group_info())
  if "mean_i_over_sigma" in absences:
    notes.append("removed %d systematically absent reflections (%s): mean "
                 "I/sigma %.2f, max %.1f, %d above 3 sigma" % (
                   n_absent, sg, absences["mean_i_over_sigma"],
                   absences["max_i_over_sigma"], absences["n_above_3_sigma"]))
    if absences["mean_i_over_sigma"] > params.absences_i_over_sigma_warning:
      warnings.append(
        "the %d reflections that %s makes systematically absent have mean "
        "I/sigma %.1f (> %.1f): the data contradict the space group; check "
        "it (e.g. a lower-symmetry group without these screw axes or glide "
        "planes)" % (n_absent, sg, absences["mean_i_over_sigma"],
                     params.absences_i_over_sigma_warning))
  else:
    notes.append("removed %d systematically absent reflections" % n_absent)
  return a.select(~flags), absences


def _check_completeness(f_obs, params, warnings):
  completeness = f_obs.completeness()
  if completeness < params.completeness_warning:
    warnings.append(
      "severely incomplete data: %.1f %% of the unique reflections to %.2f A "
      "(< %.0f %%); phasing and the maps suffer" % (
        100 * completeness, f_obs.d_min(), 100 * params.completeness_warning))


def check_twinning(a, params, notes, warnings):
  """Cheap intensity statistics for twinning and pseudo-symmetry (mmtbx
  twin_analyses), on merged, non-anomalous data without absences.

  - <|E^2-1|> over acentric reflections (E^2 = I / (eps <I/eps>) in
    resolution bins): 0.736 for an acentric Wilson distribution, 0.968 for
    a centric one.  Above params.centric_e2_warning in a non-centrosymmetric
    group: the structure is (pseudo-)centrosymmetric, the space group may
    lack an inversion centre.  Far below 0.736 hints at twinning.
  - L-test (Padilla & Yeates 2003) on positive acentric intensities: <|L|>
    0.5 untwinned, 0.375 perfect twin; below params.l_test_warning is
    flagged.  Insensitive to translational pseudo-symmetry.
  - Translational pseudo-symmetry by half a lattice vector or pseudo-
    centring (see _check_pseudo_translation).
  - Twin laws allowed by the lattice ((pseudo-)merohedry), each with a
    twin fraction from the correlation of twin-related E^2 (any space
    group), and from the H-test and the Britton plot (acentric intensities
    with sigmas); the largest above params.twin_fraction_warning is flagged
    (twinning, or pseudo-symmetry parallel to the twin law).
  All of these assume independent reflections from a packed crystal; when
  neighbouring reflections correlate (a molecule alone in a large cell,
  params.oversampling_correlation) they are skipped with a note.  At most
  params.twin_test_max_reflections (lowest resolution first) are used.
  Returns a dict; flags go to warnings."""
  from cctbx.array_family import flex
  result = {}
  try:
    i = a if a.is_xray_intensity_array() else a.f_as_f_sq()
    i = i.set_observation_type_xray_intensity()
    n_max = params.twin_test_max_reflections
    if n_max and i.size() > n_max:
      d = i.d_spacings().data()
      d_cut = sorted(d, reverse=True)[n_max - 1]
      i = i.select(d >= d_cut)
      result["d_min_used"] = d_cut
    result["n_reflections"] = i.size()
    centric_group = i.space_group().is_centric()
    result["centrosymmetric_space_group"] = centric_group
    neighbour_cc = _neighbour_correlation(_normalised_intensities(i))
    result["neighbour_correlation"] = neighbour_cc
    if neighbour_cc is not None and neighbour_cc > params.oversampling_correlation:
      notes.append(
        "twinning and pseudo-symmetry tests skipped: neighbouring reflections "
        "correlate (E^2 correlation %.2f > %.2f), as for a molecule alone in "
        "a cell much larger than itself; the tests assume a packed crystal"
        % (neighbour_cc, params.oversampling_correlation))
      result["skipped"] = "oversampled (isolated molecule in a large cell)"
      return result
    _check_pseudo_translation(_normalised_intensities(i), params, result, warnings)
    acentric = i.select_acentric()
    if acentric.size() >= 100:
      e2 = _normalised_intensities(i).select_acentric()
      moment = flex.mean(flex.abs(e2.data() - 1))
      result["mean_abs_e2_minus_1"] = moment
      if moment > params.centric_e2_warning:
        warnings.append(
          "intensity statistics look centrosymmetric (<|E^2-1|> = %.3f over "
          "%d acentric reflections; 0.736 acentric, 0.968 centric): "
          "pseudo-symmetry, or %s lacks an inversion centre the structure "
          "has" % (moment, acentric.size(), i.space_group_info()))
      positive = acentric.select(acentric.data() > 0)
      from mmtbx.scaling import twin_analyses
      l_test = twin_analyses.l_test(positive.set_observation_type(i))
      result["l_test_mean_abs_l"] = l_test.mean_l
      result["l_test_twin_fraction"] = l_test.ml_alpha
      if l_test.mean_l < params.l_test_warning:
        warnings.append(
          "possible twinning: L-test <|L|> = %.3f (untwinned 0.500, perfect "
          "twin 0.375; flagged below %.2f)" % (l_test.mean_l, params.l_test_warning))
    laws = _twin_law_tests(i, params, result)
    result["twin_laws"] = laws
    flagged = [law for law in laws if _twin_fraction(law) > params.twin_fraction_warning]
    if flagged:
      warnings.append(
        "possible twinning or pseudo-symmetry: twin law%s %s (estimated twin "
        "fraction %s; flagged above %.2f)" % (
          "s" if len(flagged) > 1 else "",
          ", ".join(law["operator"] for law in flagged),
          ", ".join("%.2f" % _twin_fraction(law) for law in flagged),
          params.twin_fraction_warning))
    elif laws:
      tested = [l for l in laws if _twin_fraction(l, None) is not None]
      notes.append("%d twin law%s possible for this lattice (%s): %s" % (
        len(laws), "s" if len(laws) > 1 else "",
        ", ".join(l["operator"] for l in laws[:4]) + (", ..." if len(laws) > 4 else ""),
        "no twinning found (largest estimated twin fraction %.2f)" % max(
          _twin_fraction(l) for l in tested) if tested else "not tested"))
  except (RuntimeError, ValueError, AssertionError, ZeroDivisionError, Sorry) as e:
    result["error"] = "%s: %s" % (type(e).__name__, e)
    notes.append("twinning tests skipped (%s)" % result["error"])
  return result


def _check_pseudo_translation(e2, params, result, warnings, min_class=50):
  """Translational pseudo-symmetry by half a lattice vector or pseudo-
  centring: with a pseudo-translation t = p/2 (p a vector of 0s and 1s),
  reflections with p.h odd are systematically weak.  For each of the seven
  parity classes the mean E^2 of p.h odd over p.h even is recorded; a ratio
  below params.pseudo_translation_ratio is flagged (1 for no translation,
  0 for an exact one).  Classes the lattice centring empties are skipped."""
  from cctbx.array_family import flex
  ratios = {}
  indices = e2.indices()
  for p in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)):
    odd = flex.bool([(p[0] * h[0] + p[1] * h[1] + p[2] * h[2]) % 2 == 1 for h in indices])
    n_odd = odd.count(True)
    if n_odd < min_class or odd.size() - n_odd < min_class:
      continue
    even_mean = flex.mean(e2.data().select(~odd))
    if even_mean > 0:
      ratios["(%s)/2" % ",".join(str(x) for x in p)] = \
        flex.mean(e2.data().select(odd)) / even_mean
  result["pseudo_translation_ratios"] = ratios
  if ratios:
    vector, ratio = min(ratios.items(), key=lambda kv: kv[1])
    if ratio < params.pseudo_translation_ratio:
      warnings.append(
        "translational pseudo-symmetry: reflections odd for the translation "
        "%s are %.0f %% as strong as the others on average (flagged below "
        "%.0f %%): the cell may be a supercell, the structure may repeat by "
        "nearly half a lattice vector, or heavy atoms sit that far apart; "
        "expect a false (doubled) solution to look plausible" % (
          vector, 100 * ratio, 100 * params.pseudo_translation_ratio))


def _neighbour_correlation(e2, min_pairs=50):
  """Mean over a*, b*, c* of the correlation of E^2(h) and E^2(h + 1 step):
  about 0 in a packed crystal (measured here: -0.10 to 0.15 on thpp and
  the four measured sets), 0.6-0.9 for a small molecule in a 40 A P1 cell,
  whose molecular transform is sampled finer than it varies.  None when
  too few neighbours are measured."""
  from cctbx import miller
  from cctbx.array_family import flex
  e2 = e2.map_to_asu()
  values = []
  for step in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
    shifted = flex.miller_index([(h[0] + step[0], h[1] + step[1], h[2] + step[2])
                                 for h in e2.indices()])
    neighbours = miller.set(e2.crystal_symmetry(), shifted,
                            e2.anomalous_flag()).map_to_asu()
    pairs = miller.match_indices(e2.indices(), neighbours.indices()).pairs()
    if pairs.size() < min_pairs:
      continue
    a = e2.data().select(flex.size_t([p[0] for p in pairs]))
    b = e2.data().select(flex.size_t([p[1] for p in pairs]))
    values.append(flex.linear_correlation(a, b).coefficient())
  return sum(values) / len(values) if values else None


def _twin_fraction(law, default=0.0):
  """The twin fraction of a twin law: from the twin-pair correlation when
  there were enough pairs (the most precise here: 0.004, 0.10, 0.30, 0.45
  for simulated fractions 0, 0.1, 0.3, 0.45 on 1500 P2_1 reflections, where
  the H-test gave 0.08 for untwinned data), else the smaller of the H-test
  and Britton estimates."""
  if "pair_correlation_fraction" in law:
    return law["pair_correlation_fraction"]
  values = [law[k] for k in ("h_test_fraction", "britton_fraction") if k in law]
  return min(values) if values else default


def _normalised_intensities(i, reflections_per_bin=100):
  """E^2 = I / (epsilon <I/epsilon>) with <> over resolution bins."""
  from cctbx.array_family import flex
  i = i.deep_copy()
  i.setup_binner_counting_sorted(reflections_per_bin=min(reflections_per_bin,
                                                         max(i.size() // 3, 10)))
  eps = i.epsilons().data().as_double()
  data = i.data() / eps
  e2 = flex.double(i.size(), 0)
  for i_bin in i.binner().range_used():
    sel = i.binner().selection(i_bin)
    mean = flex.mean(data.select(sel)) if sel.count(True) else 0
    if mean > 0:
      e2.set_selected(sel, data.select(sel) / mean)
  return i.customized_copy(data=e2, sigmas=None)


def _twin_law_tests(i, params, result):
  """Twin laws of the lattice, with H-test and Britton fractions when the
  space group is not centrosymmetric and sigmas are present."""
  from mmtbx.scaling import twin_analyses
  laws = twin_analyses.twin_laws(i, out=io.StringIO()).operators
  tested = []
  acentric = i.select_acentric()
  positive = acentric.select(acentric.data() > 0).set_observation_type(i)
  can_test = (positive.size() >= 100 and positive.sigmas() is not None)
  if not can_test:
    result["h_test_and_britton"] = ("skipped: %s" % (
      "no sigmas" if positive.sigmas() is None else
      "too few acentric reflections (centrosymmetric space group)"))
  e2 = _normalised_intensities(i) if laws else None
  for law in laws[:params.twin_test_max_laws]:
    entry = {"operator": str(law), "type": law.twin_type}
    n_pairs, fraction = _twin_pair_fraction(e2, law.operator)
    if fraction is not None:
      entry["pair_correlation_fraction"] = fraction
      entry["n_pairs"] = n_pairs
    if can_test:
      op = law.operator.as_double_array()[0:9]
      entry["h_test_fraction"] = twin_analyses.h_test(op, positive).estimated_alpha
      entry["britton_fraction"] = twin_analyses.britton_test(op, positive).estimated_alpha
    tested.append(entry)
  return tested


def _twin_pair_fraction(e2, operator, min_pairs=50):
  """Twin fraction from the correlation rho of E^2(h) and E^2(h') over the
  pairs h' = twin law (h) both measured: twinned intensities mix two
  independent Wilson intensities, rho = 2a(1-a) / (a^2 + (1-a)^2), so
  a = (1 - sqrt((1-rho)/(1+rho))) / 2 (rho <= 0 -> 0).  Works in
  centrosymmetric groups too, where the H-test has no acentric data.
  Exact pseudo-symmetry along the twin law also raises it."""
  from cctbx import miller, sgtbx
  from cctbx.array_family import flex
  e2 = e2.map_to_asu()
  cb_op = sgtbx.change_of_basis_op(operator)
  twin_mates = miller.set(e2.crystal_symmetry(), cb_op.apply(e2.indices()),
                          e2.anomalous_flag()).map_to_asu().indices()
  matches = miller.match_indices(e2.indices(), twin_mates)
  first, second = flex.size_t(), flex.size_t()
  for i_h, i_mate in matches.pairs():
    if i_h != i_mate:  # a reflection its own twin mate says nothing
      first.append(i_h)
      second.append(i_mate)
  if first.size() < min_pairs:
    return first.size(), None
  a, b = e2.data().select(first), e2.data().select(second)
  rho = flex.linear_correlation(a, b).coefficient()
  if rho <= 0:
    return first.size(), 0.0
  rho = min(rho, 1.0)
  return first.size(), 0.5 * (1 - ((1 - rho) / (1 + rho)) ** 0.5)


def _apply_symmetry(a, params, source, notes):
  """params.unit_cell / space_group win over the array's own symmetry."""
  from cctbx import crystal
  cs = a.crystal_symmetry()
  unit_cell = cs.unit_cell() if cs is not None else None
  sg_info = cs.space_group_info() if cs is not None else None
  complete = unit_cell is not None and sg_info is not None
  if params.unit_cell is not None:
    if unit_cell is not None and not unit_cell.is_similar_to(params.unit_cell):
      notes.append("unit cell %s replaced by unit_cell=%s" % (
        unit_cell, params.unit_cell))
    unit_cell = params.unit_cell
  if params.space_group is not None:
    if sg_info is not None and (sg_info.group() != params.space_group.group()):
      notes.append("space group %s replaced by space_group=%s" % (
        sg_info, params.space_group))
    sg_info = params.space_group
  if unit_cell is None or sg_info is None:
    raise Sorry("No crystal symmetry for %s (%s missing): give unit_cell= "
                "and space_group=, or symmetry_file= (a SHELX .ins/.res or "
                "another file with the cell and space group)." % (
                  source, " and ".join(x for x, v in (
                    ("unit cell", unit_cell), ("space group", sg_info))
                    if v is None)))
  try:
    symmetry = crystal.symmetry(unit_cell=unit_cell, space_group_info=sg_info)
  except AssertionError:
    raise Sorry("Unit cell %s is incompatible with space group %s for %s. "
                "Check unit_cell= and space_group=." % (
                  unit_cell, sg_info, source))
  if complete and cs.is_identical_symmetry(symmetry):
    return a
  return a.customized_copy(crystal_symmetry=symmetry, info=a.info())


def _bad_indices(a, sel, n=3):
  idx = a.indices().select(sel)
  return ", ".join(str(h) for h in list(idx[:n])) + (
    ", ..." if idx.size() > n else "")


def _check_finite(a, source, what):
  import numpy
  from cctbx.array_family import flex
  for name, values in (("values", a.data()), ("sigmas", a.sigmas())):
    if values is None:
      continue
    bad = flex.bool(~numpy.isfinite(values.as_numpy_array()))
    n_bad = bad.count(True)
    if n_bad:
      raise Sorry("%s: %d %s %s are NaN or infinite (e.g. hkl %s). Remove "
                  "them (a.select(...)) or fix the data before use."
                  % (source, n_bad, what, name, _bad_indices(a, bad)))


def _check_non_negative(a, source):
  bad = a.data() < 0
  n_bad = bad.count(True)
  if n_bad:
    raise Sorry("%s: %d negative amplitudes (e.g. hkl %s). Amplitudes "
                "cannot be negative; if these are intensities, read them as "
                "intensities (SHELX: hklf=4; in a script: "
                ".set_observation_type_xray_intensity())."
                % (source, n_bad, _bad_indices(a, bad)))


def _clean_sigmas(a, notes):
  """merge_equivalents gives sigma <= 0 zero weight and turns those values
  into 0, so such sigmas must not reach it."""
  sigmas = a.sigmas()
  if sigmas is None:
    return a
  ok = sigmas > 0
  n_bad = ok.count(False)
  if n_bad == 0:
    return a
  if n_bad == a.size():
    notes.append("sigmas all <= 0: ignored")
    return a.customized_copy(sigmas=None).set_observation_type(a)
  notes.append("removed %d reflections with sigma <= 0" % n_bad)
  return a.select(ok)


def _intensities_as_amplitudes(i_obs, params, source, notes, warnings):
  method = params.intensities_to_amplitudes
  if method == "french_wilson":
    if i_obs.sigmas() is None:
      raise Sorry("%s: French-Wilson needs sigmas but the intensities have "
                  "none (or only sigmas <= 0). Use intensities_to_amplitudes=square_root, or "
                  "provide SIGI." % source)
    return _french_wilson_with_fallback(i_obs, params, source, notes, warnings)
  if method == "square_root":
    n_neg = (i_obs.data() < 0).count(True)
    f_obs = i_obs.f_sq_as_f()
    notes.append("square root: %d intensities -> amplitudes%s" % (
      i_obs.size(),
      " (%d negative set to 0)" % n_neg if n_neg else ""))
    return f_obs
  raise Sorry("intensities_to_amplitudes=%s is not known: use french_wilson "
              "or square_root." % method)


def _french_wilson_with_fallback(i_obs, params, source, notes, warnings):
  """cctbx French-Wilson, which can fail with 'RuntimeError: Internal
  error: i_bin=...' when its interpolated mean intensity falls outside two
  neighbouring bin means.  Then the same with fewer resolution bins
  (params.french_wilson_fallback_bins, in turn: a note), and if every
  binning fails, the XTAL 3.7 conversion (cctbx f_sq_as_f): F = sqrt(I) with
  sigma(F) = sqrt(I + sigma(I)) - sqrt(I); a negative I gives F = 0 with
  sigma(F) = sqrt(sigma(I)), so weak data stay in with a large sigma instead
  of being dropped (a note and a warning)."""
  failures = []
  for max_bins in [None] + list(params.french_wilson_fallback_bins or []):
    log = io.StringIO()
    kwds = {} if max_bins is None else {"max_bins": max_bins}
    try:
      f_obs = i_obs.french_wilson(log=log, **kwds)
    except (RuntimeError, AssertionError, ValueError, ZeroDivisionError) as e:
      failures.append("%s bins: %s" % (
        "default" if max_bins is None else max_bins, str(e).splitlines()[0]
        if str(e) else type(e).__name__))
      continue
    if f_obs is None:
      raise Sorry("%s: too few intensities (%d) for French-Wilson binning. "
                  "Use intensities_to_amplitudes=square_root." % (
                    source, i_obs.size()))
    n_lost = i_obs.size() - f_obs.size()
    if failures:
      note = ("French-Wilson failed (%s); it worked with at most %d "
              "resolution bins" % ("; ".join(failures), max_bins))
      notes.append(note)
    notes.append("French-Wilson: %d intensities -> %d amplitudes%s" % (
      i_obs.size(), f_obs.size(),
      " (%d rejected)" % n_lost if n_lost else ""))
    return f_obs
  n_neg = (i_obs.data() < 0).count(True)
  f_obs = i_obs.f_sq_as_f(algorithm="xtal_3_7")
  note = ("French-Wilson failed with every binning tried (%s); amplitudes "
          "by the XTAL 3.7 conversion instead: F = sqrt(I), %d negative "
          "intensities as F = 0 with sigma(F) = sqrt(sigma(I))" % (
            "; ".join(failures), n_neg))
  notes.append(note)
  warnings.append(note)
  return f_obs


def _check_count(a, params, source, when):
  if params.min_reflections is not None and a.size() < params.min_reflections:
    name = getattr(params, "min_reflections_name", "min_reflections")
    cut = (" (the data are cut to reflections.d_min=%g)" % params.d_min) if params.d_min else ""
    raise Sorry("%s: only %d unique reflections %s%s (%s=%d). "
                "Give more data (higher resolution, a complete data set), or "
                "lower %s=." % (source, a.size(), when, cut, name, params.min_reflections, name))

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
  """What was read and prepared, with a log of every change made to it."""

  def __init__(self, f_obs, intensities=None, source="miller_array",
               notes=None):
    self.f_obs = f_obs
    self.intensities = intensities
    self.source = source
    self.notes = list(notes or [])

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
    print("  reflections:   %d unique amplitudes%s" % (
      f.size(), "" if f.sigmas() is not None else " (no sigmas)"), file=out)
    print("  completeness:  %.1f %%" % (100 * f.completeness()), file=out)
    for note in self.notes:
      print("  - %s" % note, file=out)


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
  file_type = _open(path).file_type()
  if file_type is None:
    raise Sorry("%s is not a recognised reflection file. Give an MTZ, "
                "hkl-CIF, scalepack or SHELX .hkl file." % name)
  symmetry, symmetry_note, hklf = _symmetry_from_files(path, file_type, hklf, params)
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
  if symmetry_note is not None:
    result.notes.insert(0, symmetry_note)
  return result


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
    raise Sorry("Could not read %s: %s" % (path, e))
  except Exception as e:
    raise Sorry("Could not read %s (%s: %s). Is it a complete MTZ, hkl-CIF, "
                "scalepack or SHELX .hkl file?" % (
                  os.path.basename(path), type(e).__name__, e))


def _symmetry_from_files(path, file_type, hklf, params):
  """Crystal symmetry from params.symmetry_file, or for SHELX .hkl from
  <stem>.ins/.res next to it.  Returns (symmetry or None, note or None,
  hklf): an unset hklf is taken from the .ins HKLF line, else 4."""
  sym_file = params.symmetry_file
  if sym_file is None and file_type == "shelx_hklf":
    stem = os.path.splitext(path)[0]
    for ext in (".ins", ".res", ".INS", ".RES"):
      if os.path.isfile(stem + ext):
        sym_file = stem + ext
        break
  if sym_file is None:
    return None, None, 4 if hklf is None else hklf
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
    return symmetry, "symmetry from %s (HKLF %d)" % (os.path.basename(sym_file), hklf), hklf
  return symmetry, None, 4 if hklf is None else hklf  # only fills in what the file lacks


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
  _check_finite(a, source, what)
  if not is_intensity:
    _check_non_negative(a, source)
  a = _clean_sigmas(a, notes)
  if not a.is_unique_set_under_symmetry():
    n_obs = a.size()
    a = a.merge_equivalents().array()
    notes.append("merged %d observations into %d unique %s"
                 % (n_obs, a.size(), what))
  if a.anomalous_flag():
    n_obs = a.size()
    a = a.average_bijvoet_mates()
    notes.append("averaged Bijvoet mates: %d -> %d %s"
                 % (n_obs, a.size(), what))
  n_obs = a.size()
  a = a.eliminate_sys_absent()
  if a.size() != n_obs:
    notes.append("removed %d systematically absent reflections"
                 % (n_obs - a.size()))
  _check_count(a, params, source, "after merging")
  intensities = None
  if is_intensity:
    intensities = a
    f_obs = _intensities_as_amplitudes(a, params, source, notes)
    _check_count(f_obs, params, source, "after %s" % (
      "French-Wilson" if params.intensities_to_amplitudes == "french_wilson"
      else "conversion"))
  else:
    f_obs = a
  f_obs.set_observation_type_xray_amplitude()
  return ObservedData(f_obs=f_obs, intensities=intensities, source=source,
                      notes=notes)


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


def _intensities_as_amplitudes(i_obs, params, source, notes):
  method = params.intensities_to_amplitudes
  if method == "french_wilson":
    if i_obs.sigmas() is None:
      raise Sorry("%s: French-Wilson needs sigmas but the intensities have "
                  "none (or only sigmas <= 0). Use intensities_to_amplitudes=square_root, or "
                  "provide SIGI." % source)
    log = io.StringIO()
    f_obs = i_obs.french_wilson(log=log)
    if f_obs is None:
      raise Sorry("%s: too few intensities (%d) for French-Wilson binning. "
                  "Use intensities_to_amplitudes=square_root." % (
                    source, i_obs.size()))
    n_lost = i_obs.size() - f_obs.size()
    notes.append("French-Wilson: %d intensities -> %d amplitudes%s" % (
      i_obs.size(), f_obs.size(),
      " (%d rejected)" % n_lost if n_lost else ""))
    return f_obs
  if method == "square_root":
    n_neg = (i_obs.data() < 0).count(True)
    f_obs = i_obs.f_sq_as_f()
    notes.append("square root: %d intensities -> amplitudes%s" % (
      i_obs.size(),
      " (%d negative set to 0)" % n_neg if n_neg else ""))
    return f_obs
  raise Sorry("intensities_to_amplitudes=%s is not known: use french_wilson "
              "or square_root." % method)


def _check_count(a, params, source, when):
  if params.min_reflections is not None and a.size() < params.min_reflections:
    raise Sorry("%s: only %d unique reflections %s (min_reflections=%d). "
                "Give more data (higher resolution, a complete data set), or "
                "lower min_reflections=." % (
                  source, a.size(), when, params.min_reflections))

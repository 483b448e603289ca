"""Writing the files cctbx_p2a programs produce: structures and reflections.

Every writer works in the structure's or the data's own space group and
makes files other programs take as they are:
- SHELX .res + a matching .hkl (3I4,2F8.2; HKLF 4 for intensities, 3 for
  amplitudes) that SHELXL or Olex2 refine straight away; .ins + .hkl for a
  data set to be solved;
- coreCIF with symmetry, PDB with CRYST1 (one residue LIG in chain A),
  MTZ map coefficients (FP, SIGFP, FC, PHIC, FOM, FWT, PHWT, DELFWT,
  PHDELWT), MTZ and hkl-CIF of observed data.
:func:`cctbx_p2a.reflections.read` reads the data files back, iotbx and
gemmi the structures.  Nothing is overwritten unless asked:
:func:`check_can_write` says which file is in the way and how to proceed.
"""
from __future__ import absolute_import, division, print_function

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


def named_mtz_space_group(mtz_object):
  """cctbx names a space group in a non-reference setting 'No.14' in the
  MTZ header (P 1 21/n 1, say), which gemmi and CCP4 programs cannot
  resolve; give the Hermann-Mauguin symbol of the setting instead."""
  sgi = mtz_object.space_group_info()
  name = sgi.type().lookup_symbol()
  if mtz_object.space_group_name().startswith("No.") and not name.startswith("Hall:"):
    mtz_object.set_space_group_name(name)
  return mtz_object


def write_mtz(miller_array, file_name, label=None, wavelength=None):
  """MTZ with the array's crystal symmetry; columns FP,SIGFP or I,SIGI
  unless `label` (the column root) is given."""
  if label is None:
    label = column_root_label(miller_array)
  dataset = miller_array.as_mtz_dataset(column_root_label=label,
                                        wavelength=wavelength or 1.0)
  named_mtz_space_group(dataset.mtz_object()).write(file_name)
  return file_name


def cif_block_name(prefix):
  """A CIF data block name from a file prefix (examples/case 1 -> case_1)."""
  return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(prefix)) or "p2a"


# --------------------------------------------------------------------------
# names and contents shared by the structure writers

DEFAULT_WAVELENGTH = 0.71073  # Mo K-alpha1, written when the data do not say
UNKNOWN_CONTENTS = "cell contents unknown: SFAC/UNIT are placeholders"


def element_of(scatterer):
  """'C', 'Cl', 'O2-', 'FE3+' -> 'C', 'Cl', 'O', 'Fe' (charges dropped)."""
  m = re.match(r"[A-Za-z]+", scatterer.scattering_type)
  if m is None:
    raise Sorry("Scatterer %s has no element in its scattering type %r."
                % (scatterer.label, scatterer.scattering_type))
  letters = m.group(0)[:2]
  return letters[0].upper() + letters[1:].lower()


def unique_atom_names(xray_structure, max_length=4):
  """One name per scatterer, unique, at most max_length characters, letters
  and digits only (SHELX and PDB both limit names to 4): the scatterer's
  label when it fits and is new, else element + the next free number."""
  names, used = [], set()
  counters = {}
  for sc in xray_structure.scatterers():
    name = re.sub(r"[^A-Za-z0-9]", "", sc.label or "")
    if (not name or len(name) > max_length or not name[0].isalpha()
        or name.upper() in used):
      element = element_of(sc)
      while True:
        counters[element] = counters.get(element, 0) + 1
        name = "%s%d" % (element, counters[element])
        if name.upper() not in used:
          break
      if len(name) > max_length:
        raise Sorry("Too many %s atoms to name them in %d characters."
                    % (element, max_length))
    used.add(name.upper())
    names.append(name)
  return names


def sfac_order(elements):
  """SHELX convention: C and H first, then by atomic number."""
  from cctbx.eltbx import tiny_pse
  elements = set(elements)
  first = [e for e in ("C", "H") if e in elements]
  rest = sorted((e for e in elements if e not in first),
                key=lambda e: (tiny_pse.table(e).atomic_number(), e))
  return first + rest


def unit_cell_contents(xray_structure):
  """{element: atoms in the unit cell}: occupancy times the number of
  equivalent positions of each site (so special positions count right);
  rounded to whole atoms, at least 1 for an element present."""
  counts = {}
  for sc in xray_structure.scatterers():
    e = element_of(sc)
    counts[e] = counts.get(e, 0.0) + sc.occupancy * sc.multiplicity()
  return {e: max(1, int(round(n))) for e, n in counts.items()}


def latt_symm_lines(space_group):
  """SHELX LATT and SYMM for any cctbx space group.

  LATT n: n = 1 P, 2 I, 3 R (obverse, as cctbx), 4 F, 5 A, 6 B, 7 C;
  positive when the group is centrosymmetric with the inversion centre at
  the origin (SHELX then adds -x,-y,-z), negative otherwise.  SYMM: the
  operators of the group without lattice translations and (for LATT > 0)
  without the inversion, the identity omitted.  A centring SHELX has no
  LATT for, or an inversion centre off the origin, is written out in full
  with LATT -1 and explicit SYMM cards."""
  ltr_symbol = space_group.conventional_centring_type_symbol()
  n = "PIRFABC".find(ltr_symbol) + 1 if ltr_symbol else 0
  origin_centric = space_group.is_centric() and space_group.is_origin_centric()
  translations = range(1) if n > 0 else range(space_group.n_ltr())
  inversions = range(2 if space_group.is_centric() and not origin_centric else 1)
  n = max(n, 1)
  ops = [space_group(i_ltr, i_inv, i_smx) for i_ltr in translations
         for i_inv in inversions for i_smx in range(space_group.n_smx())]
  lines = ["LATT %d" % (n if origin_centric else -n)]
  for op in ops:
    if op.is_unit_mx():
      continue
    xyz = op.as_xyz(decimal=True, t_first=True, symbol_letters="XYZ",
                    separator=",")
    lines.append("SYMM " + re.sub(r"(^|[,+-])\.(\d)", r"\g<1>0.\2", xyz))
  return lines


def shelx_header_lines(crystal_symmetry, contents, title, wavelength=None):
  """TITL, CELL, ZERR, LATT/SYMM, SFAC, UNIT (and REMs) shared by .ins and
  .res.  `contents`: {element: atoms in the unit cell}."""
  cs = crystal_symmetry
  lines = ["TITL %s in %s" % (title, cs.space_group_info().type().lookup_symbol())]
  if wavelength is None:
    lines.append("REM wavelength unknown: CELL gives %.5f A (Mo K-alpha) as "
                 "a placeholder; put the real one there" % DEFAULT_WAVELENGTH)
    wavelength = DEFAULT_WAVELENGTH
  lines.append("CELL %.5f %s" % (wavelength, " ".join(
    ["%.4f" % x for x in cs.unit_cell().parameters()[:3]] +
    ["%.3f" % x for x in cs.unit_cell().parameters()[3:]])))
  # esds are unknown here: SHELXL needs non-zero ones only for geometry esds
  lines.append("ZERR %d 0.001 0.001 0.001 0.01 0.01 0.01"
               % cs.space_group().order_z())
  lines += latt_symm_lines(cs.space_group())
  sfac = sfac_order(contents) or ["C"]
  lines.append("SFAC %s" % " ".join(sfac))
  lines.append("UNIT %s" % " ".join(str(int(contents.get(e, 1))) for e in sfac))
  return lines, sfac


# --------------------------------------------------------------------------
# SHELX

def hklf_code(miller_array):
  """SHELX HKLF 4 for intensities (F^2), 3 for amplitudes."""
  return 4 if miller_array.is_xray_intensity_array() else 3


def write_hkl(miller_array, file_name):
  """SHELX .hkl in the fixed format 3I4,2F8.2 that SHELXL and Olex2 read:
  h k l, value, sigma; values and sigmas multiplied by one scale chosen so
  that the largest fills F8.2 (99999.99, and -9999.99 for negative
  intensities), sigmas of at least 0.01; ends with the 0 0 0 line.
  Returns the scale (the written values are scale * the array's)."""
  from cctbx.array_family import flex
  column_root_label(miller_array)  # refuses other observation types
  data = miller_array.data()
  sigmas = miller_array.sigmas()
  largest = flex.max(flex.abs(data)) if data.size() else 1.0
  if sigmas is not None and sigmas.size():
    largest = max(largest, flex.max(sigmas))
  scale = 99999.0 / largest if largest > 0 else 1.0
  most_negative = -flex.min(data) if data.size() else 0.0
  if most_negative > 0:
    scale = min(scale, 9999.0 / most_negative)
  with open(file_name, "w") as f:
    for i, h in enumerate(miller_array.indices()):
      if max(abs(x) for x in h) > 999:
        raise Sorry("hkl %s does not fit the SHELX 3I4 format." % (h,))
      sigma = 1.0 if sigmas is None else sigmas[i]
      f.write("%4d%4d%4d%8.2f%8.2f\n" % (h[0], h[1], h[2], data[i] * scale,
                                         max(sigma * scale, 0.01)))
    f.write("%4d%4d%4d%8.2f%8.2f\n" % (0, 0, 0, 0, 0))
  return scale


def shelx_scale_factor(xray_structure, observations):
  """SHELXL's overall scale (first FVAR, on F: Fo ~ osf * Fc) of the
  structure against the observations as written: sum Fo|Fc| / sum |Fc|^2,
  Fo = sqrt(max(I, 0)) for intensities."""
  from cctbx import miller
  from cctbx.array_family import flex
  ms = miller.set(xray_structure.crystal_symmetry(), observations.indices(),
                  anomalous_flag=False)
  fc = flex.abs(ms.structure_factors_from_scatterers(
    xray_structure, algorithm="direct").f_calc().data())
  fo = observations.data()
  if observations.is_xray_intensity_array():
    fo = flex.sqrt(fo.deep_copy().set_selected(fo < 0, 0.0))
  denominator = flex.sum(fc * fc)
  return flex.sum(fo * fc) / denominator if denominator > 0 else 1.0


def res_lines(xray_structure, title="cctbx_p2a", wavelength=None, hklf=4,
              scale_factor=1.0, remarks=(), hydrogens=None):
  """The lines of a SHELX .res: header, refinement cards (L.S. 10, LIST 4,
  FMAP 2, PLAN 20, WGHT 0.1), FVAR, atoms (label, SFAC number, x y z,
  fixed site occupancy 10 + occupancy * site multiplicity / Z, U_iso or
  U11 U22 U33 U23 U13 U12), HKLF, END.  `hydrogens`: H atoms per
  asymmetric unit (from the composition), put in SFAC/UNIT although the
  model has none, as SHELXT does, so that SHELXL can add them (HFIX) and
  F000 and the density are right."""
  from cctbx import adptbx
  xs = xray_structure
  contents = unit_cell_contents(xs)
  if hydrogens and "H" not in contents:
    contents["H"] = max(1, int(round(hydrogens * xs.space_group().order_z())))
  lines, sfac = shelx_header_lines(xs.crystal_symmetry(), contents, title, wavelength)
  lines += ["REM %s" % r for r in remarks]
  lines += ["L.S. 10", "LIST 4", "FMAP 2", "PLAN 20", "WGHT 0.1",
            "FVAR %.5f" % scale_factor, ""]
  z = xs.space_group().order_z()
  sfac_number = {e: i + 1 for i, e in enumerate(sfac)}
  uc = xs.unit_cell()
  for name, sc in zip(unique_atom_names(xs), xs.scatterers()):
    x, y, z_ = sc.site
    sof = 10 + sc.occupancy * sc.multiplicity() / z
    head = "%-4s %2d %10.6f %10.6f %10.6f %10.5f" % (
      name, sfac_number[element_of(sc)], x, y, z_, sof)
    if sc.flags.use_u_aniso():
      u11, u22, u33, u12, u13, u23 = adptbx.u_star_as_u_cif(uc, sc.u_star)
      lines.append("%s %9.5f %9.5f =" % (head, u11, u22))
      lines.append("    %9.5f %9.5f %9.5f %9.5f" % (u33, u23, u13, u12))
    else:
      lines.append("%s %9.5f" % (head, sc.u_iso_or_equiv(uc)))
  lines += ["", "HKLF %d" % hklf, "END"]
  return lines


def write_res(xray_structure, file_name, title="cctbx_p2a", wavelength=None,
              observations=None, hklf=None, remarks=(), hydrogens=None):
  """SHELX .res of a solution, ready to open in Olex2 or refine with SHELXL
  in the structure's own space group.  With `observations` (the array as
  written to the matching .hkl, see write_shelx_pair) HKLF follows its type
  and FVAR is the scale of the structure against it; else HKLF 4 (or
  `hklf`) and FVAR 1."""
  scale = 1.0
  if observations is not None:
    hklf = hklf_code(observations)
    scale = shelx_scale_factor(xray_structure, observations)
  lines = res_lines(xray_structure, title=title, wavelength=wavelength,
                    hklf=hklf or 4, scale_factor=scale, remarks=remarks, hydrogens=hydrogens)
  with open(file_name, "w") as f:
    f.write("\n".join(lines) + "\n")
  return file_name


def write_shelx_pair(xray_structure, observations, prefix, title="cctbx_p2a",
                     wavelength=None, remarks=(), hydrogens=None):
  """{prefix}.res and a matching {prefix}.hkl (the observations: merged
  intensities -> HKLF 4, amplitudes -> HKLF 3), so that SHELXL or Olex2
  refine straight away.  `hydrogens`: see res_lines.  Returns [res, hkl]."""
  hkl_file, res_file = prefix + ".hkl", prefix + ".res"
  scale = write_hkl(observations, hkl_file)
  written = observations.customized_copy(
    data=observations.data() * scale,
    sigmas=None if observations.sigmas() is None
    else observations.sigmas() * scale).set_observation_type(observations)
  remarks = list(remarks) + [
    "%s: merged %s, scaled by %.6g to fit 2F8.2" % (
      os.path.basename(hkl_file),
      "intensities (HKLF 4)" if observations.is_xray_intensity_array()
      else "amplitudes (HKLF 3)", scale)]
  if not observations.space_group().type().number() == \
      xray_structure.space_group().type().number():
    remarks.append("data in %s, structure in %s" % (
      observations.space_group_info(), xray_structure.space_group_info()))
  write_res(xray_structure, res_file, title=title, wavelength=wavelength,
            observations=written, remarks=remarks, hydrogens=hydrogens)
  return [res_file, hkl_file]


def write_shelx(miller_array, prefix, xray_structure=None, title="cctbx_p2a",
                wavelength=None):
  """{prefix}.hkl (HKLF 4 or 3) and {prefix}.ins with CELL, LATT/SYMM, SFAC,
  UNIT and HKLF: the symmetry a SHELX .hkl lacks (no atoms: it is a data
  set to be solved).  SFAC/UNIT (unit cell contents) come from
  `xray_structure` when given, else C 1 with a REM saying they are
  placeholders."""
  column_root_label(miller_array)  # refuses other observation types
  hkl_file, ins_file = prefix + ".hkl", prefix + ".ins"
  with open(hkl_file, "w") as f:
    # the values as they are (8 significant digits in each 8-column field,
    # still read by SHELX's F8.2): a simulated data set is reproduced exactly
    miller_array.export_as_shelx_hklf(f, full_dynamic_range=True)
  contents = {"C": 1}
  if xray_structure is not None:
    contents = unit_cell_contents(xray_structure)
  lines, _ = shelx_header_lines(miller_array.crystal_symmetry(), contents,
                                title, wavelength)
  if xray_structure is None:
    # cctbx_p2a.reflections then takes no composition from this file
    lines.insert(-2, "REM %s" % UNKNOWN_CONTENTS)
  lines += ["HKLF %d" % hklf_code(miller_array), "END"]
  with open(ins_file, "w") as f:
    f.write("\n".join(lines) + "\n")
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


# --------------------------------------------------------------------------
# PDB and coreCIF

def write_pdb(xray_structure, file_name, resname="LIG", chain_id="A"):
  """PDB with CRYST1 (cell and space group symbol) and SCALE; all atoms as
  HETATM in one residue (resname, chain A, number 1), names unique (<= 4 characters),
  element columns set, B = 8 pi^2 U_iso (ANISOU for anisotropic atoms)."""
  import iotbx.pdb.hierarchy
  from cctbx import adptbx
  xs = xray_structure
  uc = xs.unit_cell()
  root = iotbx.pdb.hierarchy.root()
  model = iotbx.pdb.hierarchy.model()
  chain = iotbx.pdb.hierarchy.chain(id=chain_id)
  residue_group = iotbx.pdb.hierarchy.residue_group(resseq="   1")
  atom_group = iotbx.pdb.hierarchy.atom_group(resname=resname)
  for i, (name, sc) in enumerate(zip(unique_atom_names(xs), xs.scatterers())):
    atom = iotbx.pdb.hierarchy.atom()
    atom.set_serial("%5d" % (i + 1))
    atom.set_hetero(True)  # a ligand-like molecule: HETATM records
    # PDB convention: a 1-letter element's name starts in column 14
    element = element_of(sc)
    atom.set_name((" " + name if len(element) == 1 and len(name) < 4
                   else name).ljust(4)[:4])
    atom.set_element(element.upper().rjust(2))
    atom.set_xyz(uc.orthogonalize(sc.site))
    atom.set_occ(sc.occupancy)
    atom.set_b(adptbx.u_as_b(sc.u_iso_or_equiv(uc)))
    if sc.flags.use_u_aniso():
      atom.set_uij(adptbx.u_star_as_u_cart(uc, sc.u_star))
    atom_group.append_atom(atom)
  residue_group.append_atom_group(atom_group)
  chain.append_residue_group(residue_group)
  model.append_chain(chain)
  root.append_model(model)
  with open(file_name, "w") as f:
    f.write(root.as_pdb_string(crystal_symmetry=xs.crystal_symmetry()))
  return file_name


def write_cif(xray_structure, file_name, block="p2a", wavelength=None):
  """coreCIF: symmetry (H-M and Hall symbols, IT number, crystal system,
  _space_group_symop loop), cell with volume, Z and the formula, atom sites
  with U_iso (or U_eq and the aniso loop) and occupancy."""
  import iotbx.cif
  xs = xray_structure.deep_copy_scatterers()
  for sc, name in zip(xs.scatterers(), unique_atom_names(xs)):
    sc.label = name  # the names of the .res and .pdb
  cif_block = xs.as_cif_block(format="coreCIF")
  contents = unit_cell_contents(xs)
  z = xs.space_group().order_z()
  formula = " ".join("%s%s" % (e, "%g" % (contents[e] / z))
                     for e in sfac_order(contents))
  cif_block["_chemical_formula_sum"] = formula
  cif_block["_cell_formula_units_Z"] = str(z)
  if wavelength is not None:
    cif_block["_diffrn_radiation_wavelength"] = "%.5f" % wavelength
  model = iotbx.cif.model.cif()
  model[block] = cif_block
  with open(file_name, "w") as f:
    print(model, file=f)
  return file_name


def write_structure(xray_structure, prefix, wavelength=None):
  """{prefix}.pdb and {prefix}.cif (coreCIF, block named after the prefix)
  of a structure in its own space group; returns the file names."""
  pdb_file, cif_file = prefix + ".pdb", prefix + ".cif"
  write_pdb(xray_structure, pdb_file)
  write_cif(xray_structure, cif_file, block=cif_block_name(prefix),
            wavelength=wavelength)
  return [pdb_file, cif_file]


# --------------------------------------------------------------------------
# map coefficients

def sigma_a_weights(f_obs, f_calc, reflections_per_bin=200):
  """Figure of merit m and D per reflection from |Fo| and |Fc| alone (no
  phases, no free set), after Read (1986) with a moment estimate of sigma_A:

  - in resolution bins, E^2 = F^2 / (epsilon <F^2/epsilon>) for Fo and Fc;
  - sigma_A^2 = correlation(Eo^2, Ec^2) in the bin (for Gaussian structure
    factors correlated by sigma_A, the intensities correlate by sigma_A^2),
    clamped to [0.01, 0.99]^2;
  - X = 2 sigma_A |Eo| |Ec| / (1 - sigma_A^2); m = I1(X)/I0(X) for acentric,
    tanh(X/2) for centric reflections;
  - D = sigma_A sqrt(<Fo^2/eps> / <Fc^2/eps>) (the scale of Fc to Fo).
  Returns (fom, d) as flex.double in the order of f_obs (f_calc: the same
  indices, complex)."""
  import math
  from cctbx.array_family import flex
  from scitbx.math import bessel_i1_over_i0
  fo = f_obs.data()
  fc = flex.abs(f_calc.data())
  n = fo.size()
  work = f_obs.customized_copy(data=fo, sigmas=None)
  work.setup_binner_counting_sorted(
    reflections_per_bin=max(min(reflections_per_bin, n), 1))
  eps = work.epsilons().data().as_double()
  centric = work.centric_flags().data()
  fom = flex.double(n, 0.0)
  d = flex.double(n, 0.0)
  for i_bin in work.binner().range_used():
    sel = work.binner().selection(i_bin)
    if sel.count(True) == 0:
      continue
    o2 = flex.pow2(fo.select(sel)) / eps.select(sel)
    c2 = flex.pow2(fc.select(sel)) / eps.select(sel)
    mean_o2, mean_c2 = flex.mean(o2), flex.mean(c2)
    if mean_o2 <= 0 or mean_c2 <= 0:
      continue
    eo2, ec2 = o2 / mean_o2, c2 / mean_c2
    rho = flex.linear_correlation(eo2, ec2).coefficient() if eo2.size() > 2 else 0
    sigma_a = min(max(math.sqrt(max(rho, 0.0)), 0.01), 0.99)
    x = 2 * sigma_a * flex.sqrt(eo2 * ec2) / (1 - sigma_a ** 2)
    m_acentric = bessel_i1_over_i0(x)
    m_centric = flex.tanh(x / 2)
    m = m_acentric.deep_copy().set_selected(centric.select(sel),
                                            m_centric.select(centric.select(sel)))
    fom.set_selected(sel, m)
    d.set_selected(sel, sigma_a * math.sqrt(mean_o2 / mean_c2))
  return fom, d


def write_solution_mtz(f_obs, f_calc, file_name, wavelength=None):
  """MTZ for Coot and refinement programs, in the data's space group:
  FP (and SIGFP when the data have sigmas), FC,PHIC (the model),
  FOM (sigma_A figure of merit, see sigma_a_weights), FWT,PHWT
  (2m|Fo| - D|Fc| with phi_c for acentric, m|Fo| for centric reflections)
  and DELFWT,PHDELWT (m|Fo| - D|Fc|, the difference map)."""
  if f_obs.space_group().type().hall_symbol() != f_calc.space_group().type().hall_symbol():
    raise Sorry("Map coefficients need F_obs and F_calc in one space group "
                "(here %s and %s): compute F_calc on the F_obs set "
                "(f_obs.structure_factors_from_scatterers(structure))."
                % (f_obs.space_group_info(), f_calc.space_group_info()))
  fo = f_obs.map_to_asu()
  fo = fo.customized_copy(data=fo.data(), sigmas=fo.sigmas()
                          ).set_observation_type_xray_amplitude()
  fc = f_calc.map_to_asu()
  fo, fc = fo.common_sets(fc)
  fom, d = sigma_a_weights(fo, fc)
  from cctbx.array_family import flex
  phases = fc.phases().data()
  unit = flex.polar(flex.double(fc.size(), 1.0), phases)
  centric = fo.centric_flags().data()
  m_fo = fom * fo.data()
  d_fc = d * flex.abs(fc.data())
  two_fo_fc = (2 * m_fo - d_fc).set_selected(centric, m_fo.select(centric))
  dataset = fo.as_mtz_dataset(column_root_label="FP", wavelength=wavelength or 1.0)
  dataset.add_miller_array(fc, column_root_label="FC")
  dataset.add_miller_array(fo.customized_copy(data=fom, sigmas=None),
                           column_root_label="FOM", column_types="W")
  dataset.add_miller_array(fc.customized_copy(data=unit * two_fo_fc),
                           column_root_label="FWT")
  dataset.add_miller_array(fc.customized_copy(data=unit * (m_fo - d_fc)),
                           column_root_label="DELFWT")
  mtz = named_mtz_space_group(dataset.mtz_object())
  renames = {"PHIFC": "PHIC", "PHIFWT": "PHWT", "PHIDELFWT": "PHDELWT"}
  for column in mtz.columns():
    if column.label() in renames:
      column.set_label(renames[column.label()])
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

"""cctbx_p2a.files: structure and reflection files in any space group,
read back by iotbx and by gemmi."""
import cctbx_p2a  # noqa: F401  (must stay the first import)

import os
import random

import pytest
from cctbx import crystal, sgtbx, xray
from cctbx.array_family import flex
from cctbx.development import random_structure

from cctbx_p2a import files, reflections

ROUND_TRIP_GROUPS = ["P-1", "P21/c", "C2/c", "P212121", "P21", "R-3c", "I-43d",
                     "P21/n"]


def seeded_structure(symbol, seed=0, elements=("C",) * 6 + ("N", "O", "S")):
  """A small random structure (general positions) in a space group."""
  random.seed(seed)
  flex.set_random_seed(seed)
  xs = random_structure.xray_structure(
    space_group_info=sgtbx.space_group_info(symbol), elements=list(elements),
    volume_per_atom=20, min_distance=1.3, general_positions_only=True,
    u_iso=0.03)
  for i, sc in enumerate(xs.scatterers()):
    sc.u_iso = 0.02 + 0.002 * i
  return xs


def observed_intensities(xs, d_min=1.0):
  i = xs.structure_factors(d_min=d_min).f_calc().intensities()
  return i.customized_copy(sigmas=0.03 * i.data() + 0.5).set_observation_type_xray_intensity()


def same_group(a, b):
  return a.type().hall_symbol() == b.type().hall_symbol()


def same_as_gemmi(gemmi_spacegroup, group):
  """gemmi's group (through its Hall symbol, which may be written another
  way, e.g. -P 2yn for -P 2ybc (x-z,y,z)) is the cctbx group."""
  return sgtbx.space_group(gemmi_spacegroup.hall) == group


def sites_match(a, b, tol=1e-3):
  """Every site of a within tol (A) of the same-index site of b."""
  d = a.unit_cell().distance
  return all(d(sa.site, sb.site) < tol for sa, sb in zip(a.scatterers(), b.scatterers()))


# --------------------------------------------------------------------------
# LATT / SYMM

@pytest.mark.parametrize("symbol,latt,n_symm", [
  ("P-1", 1, 0), ("P21/c", 1, 1), ("C2/c", 7, 1), ("P212121", -1, 3),
  ("P21", -1, 1), ("R-3c", 3, 5), ("I-43d", -2, 23), ("P21/n", 1, 1),
  ("R-3c:R", 1, 5), ("Pnnn:1", -1, 7), ("Fd-3m", 4, 23)])
def test_latt_symm_rebuild_the_group(tmp_path, symbol, latt, n_symm):
  """LATT sign = centrosymmetric with -1 at the origin; SYMM without
  centring and inversion; read back by iotbx as the same group."""
  sgi = sgtbx.space_group_info(symbol)
  lines = files.latt_symm_lines(sgi.group())
  assert lines[0] == "LATT %d" % latt
  assert len(lines) - 1 == n_symm
  cs = crystal.symmetry(unit_cell=sgi.any_compatible_unit_cell(volume=1000),
                        space_group_info=sgi)
  ins = str(tmp_path / "x.ins")
  lines, _ = files.shelx_header_lines(cs, {"C": 8}, "test")
  with open(ins, "w") as f:
    f.write("\n".join(lines + ["HKLF 4", "END"]) + "\n")
  from iotbx.shelx import crystal_symmetry_from_ins
  back = crystal_symmetry_from_ins.extract_from(ins)
  assert same_group(back.space_group(), sgi.group())
  assert back.unit_cell().is_similar_to(cs.unit_cell())


# --------------------------------------------------------------------------
# round trips: .res + .hkl, .cif, .pdb, .mtz in five space groups

@pytest.fixture(scope="module", params=ROUND_TRIP_GROUPS)
def written(request, tmp_path_factory):
  symbol = request.param
  folder = tmp_path_factory.mktemp(symbol.replace("/", "_"))
  prefix = str(folder / "sol")
  xs = seeded_structure(symbol)
  i_obs = observed_intensities(xs)
  f_calc = xs.structure_factors(d_min=1.0).f_calc()
  f_obs = i_obs.f_sq_as_f()
  names = files.write_shelx_pair(xs, i_obs, prefix, title="round trip")
  names += files.write_structure(xs, prefix)
  names.append(files.write_solution_mtz(f_obs, f_calc, prefix + ".mtz"))
  return dict(symbol=symbol, prefix=prefix, xs=xs, i_obs=i_obs,
              f_obs=f_obs, names=names)


def test_all_files_written(written):
  p = written["prefix"]
  assert written["names"] == [p + ".res", p + ".hkl", p + ".pdb", p + ".cif", p + ".mtz"]
  for name in written["names"]:
    assert os.path.getsize(name) > 0


def test_res_names_the_composition_hydrogens(written):
  """The model has no H atoms, but SFAC/UNIT carry the composition's (as
  SHELXT writes them), so that SHELXL can add them with HFIX; iotbx reads
  the file back with the same atoms."""
  xs = written["xs"]
  z = xs.space_group().order_z()
  lines = files.res_lines(xs, title="h", hydrogens=9)
  assert [l for l in lines if l.startswith("SFAC")] == ["SFAC C H N O S"]
  assert [l for l in lines if l.startswith("UNIT")] == ["UNIT %d %d %d %d %d" % (6 * z, 9 * z, z, z, z)]
  # no H told, or the model holds H already: SFAC as before
  assert "SFAC C N O S" in files.res_lines(xs, title="h", hydrogens=None)
  path = os.path.join(os.path.dirname(written["prefix"]), "h.res")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  back = xray.structure.from_shelx(filename=path, strictly_shelxl=False)
  assert [sc.scattering_type for sc in back.scatterers()] == [sc.scattering_type for sc in xs.scatterers()]


def test_res_reads_back_with_iotbx(written):
  xs = written["xs"]
  back = xray.structure.from_shelx(filename=written["prefix"] + ".res",
                                   strictly_shelxl=False)
  assert same_group(back.space_group(), xs.space_group())
  assert back.unit_cell().is_similar_to(xs.unit_cell())
  assert back.scatterers().size() == xs.scatterers().size()
  assert sites_match(back, xs)
  assert [sc.scattering_type for sc in back.scatterers()] == \
    [sc.scattering_type for sc in xs.scatterers()]
  for a, b in zip(back.scatterers(), xs.scatterers()):
    assert a.occupancy == pytest.approx(1.0)
    assert a.u_iso == pytest.approx(b.u_iso, abs=1e-5)


def test_res_cards(written):
  text = open(written["prefix"] + ".res").read()
  lines = text.splitlines()
  z = written["xs"].space_group().order_z()
  assert lines[0].startswith("TITL round trip in ")
  assert any(l.startswith("REM wavelength unknown") for l in lines)
  assert "CELL 0.71073 " in text
  assert "ZERR %d " % z in text
  sfac = [l for l in lines if l.startswith("SFAC")][0].split()[1:]
  unit = [l for l in lines if l.startswith("UNIT")][0].split()[1:]
  assert sfac == ["C", "N", "O", "S"]
  assert unit == [str(6 * z), str(z), str(z), str(z)]  # integers, counts x Z
  assert "HKLF 4" in lines and lines[-1] == "END"
  fvar = float([l for l in lines if l.startswith("FVAR")][0].split()[1])
  assert fvar > 0


def test_hkl_format_and_values(written):
  """3I4,2F8.2 lines ending with 0 0 0; the .hkl + .res read back (symmetry
  and HKLF from the .res beside it) as the same merged intensities up to
  the one scale."""
  hkl = written["prefix"] + ".hkl"
  lines = open(hkl).read().splitlines()
  assert all(len(l) == 28 for l in lines)
  assert lines[-1] == "   0   0   0    0.00    0.00"
  i_obs = written["i_obs"]
  assert len(lines) == i_obs.size() + 1
  assert max(abs(float(l[12:20])) for l in lines) > 9999  # scaled to fill F8.2
  data = reflections.read(hkl)
  assert "symmetry from sol.res (HKLF 4)" in data.notes
  assert same_group(data.f_obs.space_group(), written["xs"].space_group())
  back = data.intensities
  assert back.size() == i_obs.size()
  a, b = back.common_sets(i_obs)
  assert a.size() == i_obs.size()
  scale = flex.sum(a.data()) / flex.sum(b.data())
  assert flex.max(flex.abs(a.data() - scale * b.data())) <= 0.01  # F8.2 rounding
  # the .res says what the asymmetric unit holds
  assert data.composition == {"C": 6, "N": 1, "O": 1, "S": 1}


def test_amplitudes_give_hklf3(tmp_path):
  xs = seeded_structure("P21")
  f = observed_intensities(xs).f_sq_as_f()
  prefix = str(tmp_path / "amp")
  files.write_shelx_pair(xs, f, prefix)
  assert "HKLF 3" in open(prefix + ".res").read().splitlines()
  data = reflections.read(prefix + ".hkl")
  assert data.intensities is None
  assert "symmetry from amp.res (HKLF 3)" in data.notes


def test_cif_reads_back_with_iotbx_and_gemmi(written):
  import gemmi
  xs = written["xs"]
  cif = written["prefix"] + ".cif"
  back = xray.structure.from_cif(file_path=cif)
  back = list(back.values())[0] if isinstance(back, dict) else back
  assert same_group(back.space_group(), xs.space_group())
  assert back.scatterers().size() == xs.scatterers().size()
  assert sites_match(back, xs)
  small = gemmi.read_small_structure(cif)
  assert same_as_gemmi(small.spacegroup, xs.space_group())
  assert len(small.sites) == xs.scatterers().size()
  assert small.cell.a == pytest.approx(xs.unit_cell().parameters()[0], abs=1e-3)
  text = open(cif).read()
  for tag in ("_space_group_name_Hall", "_space_group_symop_operation_xyz",
              "_cell_formula_units_Z", "_atom_site_U_iso_or_equiv"):
    assert tag in text


def test_pdb_reads_back_with_iotbx_and_gemmi(written):
  import gemmi
  import iotbx.pdb
  xs = written["xs"]
  pdb = written["prefix"] + ".pdb"
  inp = iotbx.pdb.input(file_name=pdb)
  assert same_group(inp.crystal_symmetry().space_group(), xs.space_group())
  back = inp.xray_structure_simple()
  assert back.scatterers().size() == xs.scatterers().size()
  assert sites_match(back, xs, tol=2e-3)
  hierarchy = inp.construct_hierarchy()
  residues = list(hierarchy.residue_groups())
  assert len(residues) == 1 and residues[0].parent().id == "A"
  assert residues[0].atom_groups()[0].resname == "LIG"
  assert all(a.hetero for a in hierarchy.atoms())
  names = [a.name.strip() for a in hierarchy.atoms()]
  assert len(set(names)) == len(names)
  st = gemmi.read_structure(pdb)
  assert same_as_gemmi(gemmi.find_spacegroup_by_name(st.spacegroup_hm), xs.space_group())
  assert st.cell.b == pytest.approx(xs.unit_cell().parameters()[1], abs=1e-3)
  assert sum(1 for _ in st[0]["A"][0]) == xs.scatterers().size()


def test_mtz_reads_back_with_iotbx_and_gemmi(written):
  import gemmi
  from iotbx import mtz
  xs = written["xs"]
  name = written["prefix"] + ".mtz"
  m = mtz.object(name)
  assert same_group(m.space_group(), xs.space_group())
  labels = [c.label() for c in m.columns()]
  assert labels == ["H", "K", "L", "FP", "SIGFP", "FC", "PHIC", "FOM", "FWT",
                    "PHWT", "DELFWT", "PHDELWT"]
  g = gemmi.read_mtz_file(name)
  assert g.spacegroup is not None, g.spacegroup_name  # a name gemmi knows
  assert same_as_gemmi(g.spacegroup, xs.space_group())
  fom = m.get_column("FOM").extract_values()
  assert 0 <= flex.min(fom) and flex.max(fom) <= 1
  # the model is the truth here: the figure of merit is high
  assert flex.mean(fom) > 0.9


def test_fom_tells_a_wrong_model_from_the_right_one():
  xs = seeded_structure("P21")
  f_obs = observed_intensities(xs).f_sq_as_f()
  right = f_obs.structure_factors_from_scatterers(xs).f_calc()
  wrong_xs = seeded_structure("P21", seed=7)
  wrong_xs = wrong_xs.customized_copy(crystal_symmetry=xs.crystal_symmetry())
  wrong = f_obs.structure_factors_from_scatterers(wrong_xs).f_calc()
  fom_right, d_right = files.sigma_a_weights(f_obs, right)
  fom_wrong, d_wrong = files.sigma_a_weights(f_obs, wrong)
  assert flex.mean(fom_right) > 0.9
  assert flex.mean(fom_wrong) < 0.5


def test_mtz_without_sigmas_has_no_sigfp(tmp_path):
  from iotbx import mtz
  xs = seeded_structure("P-1")
  f_calc = xs.structure_factors(d_min=1.2).f_calc()
  f_obs = abs(f_calc).set_observation_type_xray_amplitude()
  name = files.write_solution_mtz(f_obs, f_calc, str(tmp_path / "x.mtz"))
  labels = [c.label() for c in mtz.object(name).columns()]
  assert "SIGFP" not in labels and "FOM" in labels and "FWT" in labels


def test_special_positions_and_long_labels(tmp_path):
  """An atom on an inversion centre: SHELX occupancy 10.5 in P-1, UNIT
  counts it once per cell; labels too long or repeated are renamed."""
  cs = crystal.symmetry(unit_cell=(7, 8, 9, 95, 100, 105), space_group_symbol="P-1")
  xs = xray.structure(crystal_symmetry=cs)
  for label, site, t in (("Mn_centre", (0, 0, 0), "Mn"), ("C1", (0.1, 0.2, 0.3), "C"),
                         ("C1", (0.3, 0.1, 0.2), "C")):
    xs.add_scatterer(xray.scatterer(label=label, site=site, u=0.02, scattering_type=t))
  assert files.unique_atom_names(xs) == ["Mn1", "C1", "C2"]
  assert files.unit_cell_contents(xs) == {"Mn": 1, "C": 4}
  res = files.write_res(xs, str(tmp_path / "x.res"))
  text = open(res).read()
  assert "UNIT 4 1" in text and "SFAC C Mn" in text
  assert "10.50000" in text.split("Mn1")[1].splitlines()[0]
  back = xray.structure.from_shelx(filename=res, strictly_shelxl=False)
  assert back.scatterers()[0].occupancy == pytest.approx(1.0)
  assert back.scatterers()[0].multiplicity() == 1


def test_write_shelx_ins_for_a_data_set(tmp_path):
  """p2a.simulate's .hkl + .ins: no atoms, UNIT = cell contents."""
  xs = seeded_structure("P212121")
  i_obs = observed_intensities(xs)
  hkl, ins = files.write_shelx(i_obs, str(tmp_path / "d"), xray_structure=xs)
  text = open(ins).read()
  assert "LATT -1" in text and "UNIT 24 4 4 4" in text and "HKLF 4" in text
  data = reflections.read(hkl)
  assert data.composition == {"C": 6, "N": 1, "O": 1, "S": 1}
  assert data.intensities.size() == i_obs.size()


def test_fvar_is_shelxl_overall_scale_on_f():
  """thpp.ins holds SHELXL's refined osf (FVAR 0.35838) for thpp.hkl: the
  scale written to a .res, sum Fo|Fc| / sum |Fc|^2 on F, agrees to 1 %."""
  import smtbx.regression.test_data as test_data
  stem = os.path.join(os.path.dirname(test_data.__file__), "thpp")
  xs = xray.structure.from_shelx(filename=stem + ".ins", strictly_shelxl=False)
  data = reflections.read(stem + ".hkl")
  assert files.shelx_scale_factor(xs, data.intensities) == pytest.approx(0.35838, rel=0.01)


def test_thpp_reference_explains_the_written_hkl(tmp_path):
  """The published thpp model (non-H atoms) written as .res + .hkl from the
  unmerged thpp.hkl read back as a model and data that agree (R1 0.085 with
  no hydrogens): symmetry, indices, scale and atoms all survive."""
  import smtbx.regression.test_data as test_data
  stem = os.path.join(os.path.dirname(test_data.__file__), "thpp")
  data = reflections.read(stem + ".hkl")
  xs = files.read_structure(stem + ".cif")
  xs = xs.select(flex.bool([sc.scattering_type != "H" for sc in xs.scatterers()]))
  prefix = str(tmp_path / "thpp_out")
  files.write_shelx_pair(xs, data.observations_for_refinement(), prefix,
                         wavelength=data.wavelength)
  text = open(prefix + ".res").read()
  assert "CELL 0.71073 6.9200 14.5750 9.7250" in text  # the model's cell
  assert "REM wavelength" not in text  # the .ins next to thpp.hkl gave it
  # occupancy-weighted cell contents of the disordered model (N3/C3 half
  # each, C7A/C7B 0.88/0.12): C 10.5, N 3.5, F 2 per molecule, Z = 4
  assert "SFAC C N F\nUNIT 42 14 8" in text
  back = xray.structure.from_shelx(filename=prefix + ".res", strictly_shelxl=False)
  fo = reflections.read(prefix + ".hkl").f_obs
  fc = abs(fo.structure_factors_from_scatterers(back).f_calc())
  k = flex.sum(fo.data() * fc.data()) / flex.sum(fc.data() * fc.data())
  r1 = flex.sum(flex.abs(fo.data() - k * fc.data())) / flex.sum(fo.data())
  assert r1 < 0.1


def test_latt_symm_for_a_centring_shelx_has_no_latt_for(tmp_path):
  """P2_1/c with an extra (1/2,0,0) centring: LATT 1 and the centring
  written out as SYMM cards; iotbx rebuilds the same group."""
  g = sgtbx.space_group(sgtbx.space_group_info("P21/c").group())
  g.expand_ltr(sgtbx.tr_vec((6, 0, 0), 12))
  lines = files.latt_symm_lines(g)
  assert lines == ["LATT 1", "SYMM -X,0.5+Y,0.5-Z", "SYMM 0.5+X,Y,Z", "SYMM 0.5-X,0.5+Y,0.5-Z"]
  cs = crystal.symmetry(unit_cell=(10, 11, 12, 90, 100, 90),
                        space_group_info=sgtbx.space_group_info(group=g))
  header, _ = files.shelx_header_lines(cs, {"C": 8}, "t")
  ins = str(tmp_path / "x.ins")
  with open(ins, "w") as f:
    f.write("\n".join(header + ["HKLF 4", "END"]) + "\n")
  from iotbx.shelx import crystal_symmetry_from_ins
  assert crystal_symmetry_from_ins.extract_from(ins).space_group() == g


def test_ins_without_a_structure_gives_no_composition(tmp_path):
  xs = seeded_structure("P21")
  hkl, ins = files.write_shelx(observed_intensities(xs), str(tmp_path / "d"))
  assert "REM cell contents unknown" in open(ins).read()
  data = reflections.read(hkl)
  assert data.composition is None
  assert "d.ins: SFAC/UNIT are placeholders; no composition taken" in data.notes

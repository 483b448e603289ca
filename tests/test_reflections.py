"""cctbx_p2a.reflections: reading, checking and preparing observed data."""
import cctbx_p2a  # noqa: F401  (must stay the first import)

import io
import math
import os

import pytest
from cctbx import crystal, miller, sgtbx
from cctbx.array_family import flex
from libtbx.utils import Sorry

import data_factory as df
from cctbx_p2a import reflections
from cctbx_p2a.reflections import default_params, prepare, read


def params(**kwds):
  return default_params(**{"reflections." + k: v for k, v in kwds.items()})


def assert_same_amplitudes(f_obs, reference, tol=1e-3):
  """Same indices (after mapping to the asu) and the same values."""
  a, b = f_obs.map_to_asu().common_sets(reference.map_to_asu())
  assert a.size() == reference.size() == f_obs.size()
  assert flex.max(flex.abs(a.data() - b.data())) < tol * flex.max(b.data())


@pytest.fixture(scope="module")
def f_p21():
  return df.f_obs("P21")


@pytest.fixture
def mtz_f_and_i(tmp_path, f_p21):
  return df.write_mtz(tmp_path / "x.mtz", (f_p21, "FP"), (f_p21.f_as_f_sq(), "I"))


def sorry(func, *args, **kwds):
  with pytest.raises(Sorry) as e:
    func(*args, **kwds)
  return str(e.value)


# --------------------------------------------------------------------------
# happy paths

def test_mtz_amplitudes(tmp_path, f_p21):
  data = read(df.write_mtz(tmp_path / "x.mtz", (f_p21, "FP")))
  f = data.f_obs
  assert data.source == "x.mtz:FP,SIGFP"
  assert data.intensities is None
  assert f.is_xray_amplitude_array() and not f.anomalous_flag()
  assert f.sigmas() is not None
  assert str(f.space_group_info()) == "P 1 21 1"
  assert f.unit_cell().is_similar_to(f_p21.unit_cell())
  assert_same_amplitudes(f, f_p21)


def test_mtz_intensities_french_wilson(tmp_path, f_p21):
  data = read(df.write_mtz(tmp_path / "x.mtz", (f_p21.f_as_f_sq(), "I")))
  assert data.source == "x.mtz:I,SIGI"
  assert data.intensities.is_xray_intensity_array()
  assert data.intensities.size() == f_p21.size()
  assert data.f_obs.is_xray_amplitude_array()
  assert any(n.startswith("French-Wilson: %d intensities" % f_p21.size())
             for n in data.notes)
  # strong data: French-Wilson amplitudes are close to the true ones
  a, b = data.f_obs.common_sets(f_p21)
  assert a.size() > 0.95 * f_p21.size()
  assert flex.linear_correlation(a.data(), b.data()).coefficient() > 0.99


@pytest.mark.parametrize("labels,kind", [
  ("FP", "amplitudes"), ("FP,SIGFP", "amplitudes"), ("I", "intensities"),
  ("I,SIGI", "intensities"), (["I", "SIGI"], "intensities")])
def test_labels_choose_array(mtz_f_and_i, labels, kind):
  data = read(mtz_f_and_i, params(labels=labels))
  assert (data.intensities is not None) == (kind == "intensities")
  assert data.source.startswith("x.mtz:" + ("I,SIGI" if kind == "intensities"
                                            else "FP,SIGFP"))


def test_shelx_hkl_with_ins_beside_it(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21.f_as_f_sq())
  data = read(hkl)
  assert data.source == "x.hkl:Iobs,SigIobs"
  assert str(data.f_obs.space_group_info()) == "P 1 21 1"
  assert "symmetry from x.ins (HKLF 4)" in data.notes
  assert data.intensities.size() == f_p21.size()


def test_shelx_hkl_res_and_symmetry_file(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21.f_as_f_sq(), ins=False)
  df.write_ins(tmp_path / "x.res", f_p21.crystal_symmetry())
  assert "symmetry from x.res (HKLF 4)" in read(hkl).notes
  other = df.write_ins(tmp_path / "model.ins", f_p21.crystal_symmetry())
  data = read(hkl, params(symmetry_file=other))
  assert "symmetry from model.ins (HKLF 4)" in data.notes


def test_shelx_hkl_with_phil_symmetry(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21.f_as_f_sq(), ins=False)
  data = read(hkl, params(unit_cell="9 10 11 90 100 90", space_group="P21"))
  assert str(data.f_obs.space_group_info()) == "P 1 21 1"
  assert data.f_obs.unit_cell().is_similar_to(f_p21.unit_cell())
  assert data.f_obs.size() == f_p21.size()


@pytest.mark.parametrize("how", ["param", "suffix"])
def test_shelx_hklf3_amplitudes(tmp_path, f_p21, how):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21, hklf=3)
  if how == "param":
    data = read(hkl, params(hklf=3))
  else:
    data = read(hkl + "=hklf3")
  assert data.intensities is None
  assert_same_amplitudes(data.f_obs, f_p21, tol=2e-3)  # file has 2 decimals


def test_hkl_cif_intensities(tmp_path, f_p21):
  data = read(df.write_cif(tmp_path / "x.cif", f_p21.f_as_f_sq()))
  assert "_refln_F_squared_meas" in data.source
  assert str(data.f_obs.space_group_info()) == "P 1 21 1"
  assert data.intensities.size() == f_p21.size()


def test_hkl_cif_amplitudes(tmp_path, f_p21):
  data = read(df.write_cif(tmp_path / "x.cif", f_p21))
  assert data.intensities is None
  assert_same_amplitudes(data.f_obs, f_p21)


def test_scalepack_merged(tmp_path):
  from iotbx.scalepack import merge
  i = df.i_obs(space_group="P21")
  merge.write(file_name=str(tmp_path / "x.sca"), miller_array=i)
  data = read(str(tmp_path / "x.sca"))
  assert data.source == "x.sca:I,SIGI"
  assert str(data.f_obs.space_group_info()) == "P 1 21 1"
  # the scalepack writer loses the odd reflection whose sigma rounds to 0
  assert i.size() - 2 <= data.intensities.size() <= i.size()


def test_anomalous_array_is_averaged(tmp_path):
  fa = df.f_obs("P21", anomalous_flag=True)
  assert fa.anomalous_flag()
  data = read(df.write_mtz(tmp_path / "x.mtz", (fa, "F")))
  f = data.f_obs
  assert not f.anomalous_flag()
  assert f.size() == fa.average_bijvoet_mates().size() < fa.size()
  assert any(n.startswith("averaged Bijvoet mates") for n in data.notes)
  # no anomalous signal in f_calc of C atoms without f'': mean = either mate
  assert_same_amplitudes(f, df.f_obs("P21"))


def test_p21_systematic_absences_removed(f_p21):
  with_absent = df.with_absences(f_p21)
  n_absent = with_absent.size() - f_p21.size()
  data = prepare(with_absent)
  assert data.f_obs.size() == f_p21.size()
  assert data.f_obs.sys_absent_flags().data().count(True) == 0
  assert any(n.startswith("removed %d systematically absent reflections "
                          "(P 1 21 1): mean I/sigma 1.00" % n_absent)
             for n in data.notes)
  assert data.absences["n"] == n_absent
  assert data.absences["mean_i_over_sigma"] == pytest.approx(1.0)
  assert not any("contradict the space group" in w for w in data.warnings)


def test_strong_absences_contradict_the_space_group(f_p21):
  """Data of a P2 structure read as P21: the 0k0, k odd reflections are
  strong, so the screw axis is wrong -- a warning, not a refusal."""
  xs = df.structure("P2")
  f_p2 = xs.structure_factors(d_min=1.5).f_calc().amplitudes()
  f_p2 = f_p2.customized_copy(sigmas=f_p2.data() * 0.05 + 0.1)
  as_p21 = f_p2.customized_copy(
    crystal_symmetry=f_p21.crystal_symmetry()).set_observation_type_xray_amplitude()
  n_absent = as_p21.sys_absent_flags().data().count(True)
  assert n_absent > 0
  data = prepare(as_p21)
  assert data.absences["n"] == n_absent
  assert data.absences["mean_i_over_sigma"] > 3
  assert any("contradict the space group" in w and "P 1 21 1" in w
             for w in data.warnings)
  assert data.f_obs.size() == as_p21.size() - n_absent


def test_unmerged_equivalents_are_merged(f_p21):
  p1 = f_p21.expand_to_p1()  # every reflection twice, in P21 terms
  unmerged = p1.customized_copy(crystal_symmetry=f_p21.crystal_symmetry())
  assert not unmerged.is_unique_set_under_symmetry()
  data = prepare(unmerged)
  assert_same_amplitudes(data.f_obs, f_p21)
  assert any(n.startswith("merged %d observations" % p1.size())
             for n in data.notes)


def test_zero_sigmas_do_not_zero_the_data(f_p21):
  """merge_equivalents weights sigma <= 0 by zero and returns 0 for them."""
  p1 = f_p21.expand_to_p1()
  unmerged = p1.customized_copy(crystal_symmetry=f_p21.crystal_symmetry(),
                                sigmas=flex.double(p1.size(), 0))
  data = prepare(unmerged)
  assert "sigmas all <= 0: ignored" in data.notes
  assert data.f_obs.sigmas() is None
  assert_same_amplitudes(data.f_obs, f_p21)


def test_reflections_with_non_positive_sigma_removed(f_p21):
  s = f_p21.sigmas().deep_copy()
  s[0] = 0
  s[1] = -1
  data = prepare(f_p21.customized_copy(sigmas=s))
  assert data.f_obs.size() == f_p21.size() - 2
  assert "removed 2 reflections with sigma <= 0" in data.notes


def test_square_root_without_sigmas(f_p21):
  i = f_p21.f_as_f_sq().customized_copy(sigmas=None)
  i.data()[0] = -4.0
  data = prepare(i, params(intensities_to_amplitudes="square_root"))
  assert data.f_obs.data()[0] == 0
  assert "square root: %d intensities -> amplitudes (1 negative set to 0)"\
    % f_p21.size() in data.notes
  a, b = data.f_obs.common_sets(f_p21)
  assert flex.max(flex.abs(a.data() - b.data())[1:]) < 1e-6


def test_symmetry_override(tmp_path, f_p21):
  data = read(df.write_mtz(tmp_path / "x.mtz", (f_p21, "FP")),
              params(space_group="P2"))
  assert str(data.f_obs.space_group_info()) == "P 1 2 1"
  assert any("replaced by space_group=P 1 2 1" in n for n in data.notes)


def test_prepare_copies_and_show(f_p21):
  before = f_p21.data().deep_copy()
  data = prepare(f_p21, source="script")
  assert data.f_obs is not f_p21
  data.f_obs.data()[0] = -1
  assert f_p21.data()[0] == before[0]
  out = io.StringIO()
  data.show(out=out)
  text = out.getvalue()
  for word in ("script", "P 1 21 1", "(9, 10, 11, 90, 100, 90)",
               "%d unique" % f_p21.size(), "completeness:  100.0 %"):
    assert word in text


def test_default_params():
  p = params(labels="I,SIGI", unit_cell="10 10 10 90 90 90", space_group="P1")
  assert p.labels == ["I,SIGI"] and p.hklf is None
  assert p.intensities_to_amplitudes == "french_wilson"
  assert str(p.space_group) == "P 1"


# --------------------------------------------------------------------------
# checks: each one a Sorry saying what is wrong and what to do

def test_missing_file(tmp_path):
  msg = sorry(read, str(tmp_path / "nope.mtz"))
  assert "not found" in msg and "nope.mtz" in msg
  assert "not a file" in sorry(read, str(tmp_path))


def test_unrecognised_file(tmp_path):
  p = tmp_path / "notes.txt"
  p.write_text("hello\nthis is not reflection data\n")
  msg = sorry(read, str(p))
  assert "not a recognised reflection file" in msg and "MTZ" in msg


def test_truncated_mtz(tmp_path, f_p21):
  good = df.write_mtz(tmp_path / "good.mtz", (f_p21, "FP"))
  bad = tmp_path / "bad.mtz"
  bad.write_bytes(open(good, "rb").read()[:300])
  assert "Could not read" in sorry(read, str(bad))


def test_no_amplitudes_or_intensities(tmp_path, f_p21):
  flags = f_p21.generate_r_free_flags()
  msg = sorry(read, df.write_mtz(tmp_path / "x.mtz", (flags, "FreeR_flag")))
  assert "No amplitude or intensity array" in msg and "FreeR_flag" in msg


def test_several_candidates_need_labels(mtz_f_and_i):
  msg = sorry(read, mtz_f_and_i)
  assert msg == ("Several amplitude/intensity arrays in x.mtz: FP,SIGFP, "
                 "I,SIGI. Choose one with labels=FP")


def test_several_candidates_in_cif_suggest_full_label(tmp_path, f_p21):
  import iotbx.cif
  block = iotbx.cif.miller_arrays_as_cif_block(
    f_p21, array_type="meas", format="coreCIF")
  block.add_miller_array(f_p21.f_as_f_sq(), array_type="meas")
  model = iotbx.cif.model.cif()
  model["t"] = block.cif_block
  path = tmp_path / "x.cif"
  path.write_text(str(model))
  msg = sorry(read, str(path))
  assert "labels=t,_refln_F_meas,_refln_F_sigma" in msg
  data = read(str(path), params(labels="_refln_F_squared_meas"))
  assert data.intensities is not None


def test_label_not_found_lists_labels(mtz_f_and_i):
  msg = sorry(read, mtz_f_and_i, params(labels="FOBS"))
  assert "labels=FOBS not found in x.mtz" in msg
  assert "FP,SIGFP (amplitudes)" in msg and "I,SIGI (intensities)" in msg


def test_label_of_non_data_array(tmp_path, f_p21):
  path = df.write_mtz(tmp_path / "x.mtz", (f_p21, "FP"),
                      (f_p21.generate_r_free_flags(), "FreeR_flag"))
  msg = sorry(read, path, params(labels="FreeR_flag"))
  assert "not an amplitude or intensity array" in msg and "FP,SIGFP" in msg


def test_no_crystal_symmetry(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21.f_as_f_sq(), ins=False)
  for p in (None, params(unit_cell="9 10 11 90 100 90")):
    msg = sorry(read, hkl, p)
    assert "No crystal symmetry" in msg
    for hint in ("unit_cell=", "space_group=", "symmetry_file=", "x.ins"):
      assert hint in msg
  no_symmetry = miller.array(
    miller.set(crystal.symmetry(), f_p21.indices(), False),
                             f_p21.data()).set_observation_type(f_p21)
  assert "give unit_cell= and space_group=" in sorry(prepare, no_symmetry)
  sca = tmp_path / "u.sca"  # unmerged scalepack: no symmetry in the file
  f_p21.f_as_f_sq().export_as_scalepack_unmerged(file_name=str(sca))
  msg = sorry(read, str(sca))
  assert "No crystal symmetry for u.sca" in msg and "u.ins" not in msg
  data = read(str(sca), params(symmetry_file=df.write_ins(
    tmp_path / "sym.ins", f_p21.crystal_symmetry())))
  assert f_p21.size() - 2 <= data.intensities.size() <= f_p21.size()


def test_bad_symmetry_file(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21.f_as_f_sq(), ins=False)
  msg = sorry(read, hkl, params(symmetry_file=str(tmp_path / "none.ins")))
  assert "symmetry_file not found" in msg
  junk = tmp_path / "junk.ins"
  junk.write_text("TITL nothing here\nEND\n")
  assert "No crystal symmetry" in sorry(read, hkl,
                                        params(symmetry_file=str(junk)))


def test_incompatible_cell_and_space_group(f_p21):
  msg = sorry(prepare, f_p21, params(space_group="P4"))
  assert "incompatible with space group P 4" in msg


def test_hklf_conflicts(tmp_path, f_p21):
  hkl = df.write_shelx(tmp_path / "x.hkl", f_p21, hklf=3)
  assert read(hkl).f_obs.is_xray_amplitude_array()  # unset hklf: taken from the .ins
  assert "x.ins says HKLF 3" in sorry(read, hkl, params(hklf=4))
  assert "hklf=5 is not supported" in sorry(read, hkl, params(hklf=5))


def test_french_wilson_needs_sigmas(tmp_path, f_p21):
  i = f_p21.f_as_f_sq().customized_copy(sigmas=None)
  msg = sorry(read, df.write_mtz(tmp_path / "x.mtz", (i, "I")))
  assert "intensities_to_amplitudes=square_root" in msg and "SIGI" in msg


def test_too_few_reflections(f_p21):
  msg = sorry(prepare, f_p21, params(min_reflections=f_p21.size() + 1))
  assert "only %d unique reflections" % f_p21.size() in msg
  assert "min_reflections" in msg
  prepare(f_p21, params(min_reflections=f_p21.size()))  # exactly enough
  # counted after merging: the unmerged P1 expansion has twice as many
  p1 = f_p21.expand_to_p1()
  unmerged = p1.customized_copy(crystal_symmetry=f_p21.crystal_symmetry())
  assert "only %d" % f_p21.size() in sorry(
    prepare, unmerged, params(min_reflections=f_p21.size() + 1))


@pytest.mark.parametrize("kind,where,value", [
  ("amplitudes", "values", float("nan")),
  ("amplitudes", "sigmas", float("inf")),
  ("intensities", "values", float("-inf")),
  ("intensities", "sigmas", float("nan"))])
def test_non_finite_values(f_p21, kind, where, value):
  a = f_p21 if kind == "amplitudes" else f_p21.f_as_f_sq()
  a = a.deep_copy()
  (a.data() if where == "values" else a.sigmas())[5] = value
  msg = sorry(prepare, a)
  assert "1 %s %s are NaN or infinite" % (kind, where) in msg
  assert str(a.indices()[5]) in msg


def test_negative_amplitudes(f_p21):
  a = f_p21.deep_copy()
  a.data()[3] = -2.0
  msg = sorry(prepare, a)
  assert "1 negative amplitudes" in msg and str(a.indices()[3]) in msg
  assert "set_observation_type_xray_intensity" in msg


@pytest.mark.parametrize("thing", ["flex", "list", "set"])
def test_prepare_needs_a_miller_array(f_p21, thing):
  obj = {"flex": f_p21.data(), "list": [1.0, 2.0],
         "set": f_p21.set()}[thing]
  assert "needs a cctbx.miller.array" in sorry(prepare, obj)


def test_prepare_needs_observation_type(f_p21):
  untyped = miller.array(f_p21, f_p21.data())
  assert "set_observation_type_xray_amplitude()" in sorry(prepare, untyped)
  complex_f = miller.array(f_p21, f_p21.data() * (1 + 0j))
  assert "complex structure factors" in sorry(prepare, complex_f)


def test_no_nan_leaks_to_f_obs(tmp_path, f_p21):
  """Every value handed on is finite and non-negative."""
  i = f_p21.f_as_f_sq()
  data = read(df.write_mtz(tmp_path / "x.mtz", (i, "I")))
  for x in list(data.f_obs.data()) + list(data.f_obs.sigmas()):
    assert math.isfinite(x) and x >= 0


# --------------------------------------------------------------------------
# crystals: SHELX composition, unmerged and anomalous data, absences,
# French-Wilson fallback, twinning and completeness flags

def thpp_path(ext):
  import smtbx.regression.test_data as test_data
  return os.path.join(os.path.dirname(test_data.__file__), "thpp" + ext)


MEASURED = "/work/shared/data/measured"


def test_thpp_ins_and_unmerged_hkl():
  """thpp.ins (P2_1/n, SFAC C H F N, UNIT 40 40 8 16, Z = 4) next to the
  unmerged thpp.hkl: composition UNIT / 4, equivalents merged with R_int,
  the 114 absences of the 2_1 screw and the n glide counted and removed."""
  data = read(thpp_path(".hkl"))
  assert data.composition == {"C": 10, "H": 10, "F": 2, "N": 4}
  assert reflections.composition_formula(data.composition) == "C10F2N4"
  assert "composition from thpp.ins: UNIT / Z (Z = 4) = C10H10F2N4" in data.notes
  assert data.wavelength == pytest.approx(0.71073)
  assert data.merging["n_observations"] == 14205
  assert data.merging["n_unique"] == 3089
  assert 0.03 < data.merging["r_int"] < 0.08
  assert any(n.startswith("merged 14205 observations into 3089 unique "
                          "intensities (R_int = 0.05") for n in data.notes)
  assert data.absences["n"] == 114 and data.absences["mean_i_over_sigma"] < 1
  assert not any("contradict" in w for w in data.warnings)
  assert data.f_obs.size() == 3089 - 114
  assert data.f_obs.sys_absent_flags().data().count(True) == 0
  assert data.twinning["centrosymmetric_space_group"] is True


def test_mtz_with_shelx_symmetry_file_gives_composition(tmp_path, f_p21):
  mtz = df.write_mtz(tmp_path / "x.mtz", (f_p21, "FP"))
  data = read(mtz, params(symmetry_file=thpp_path(".ins"), space_group="P21/n",
                          unit_cell="6.9196 14.5749 9.7248 90 90.637 90"))
  assert data.composition == {"C": 10, "H": 10, "F": 2, "N": 4}


@pytest.mark.parametrize("cards,z,expected", [
  # long-form SFAC, '=' continuation, lower case, comments
  ("SFAC C H\nSFAC Fe 11.7695 4.7611 7.3573 0.3072 3.5222 15.3535 2.3045 =\n"
   " 76.8805 1.0369 0.0000 0.0000 0.0000 0.0000 1.0000 55.8450\n"
   "UNIT 48 40 2 ! cell\n", 2, {"C": 12, "H": 10, "Fe": 0.5}),  # Z' = 1/2
  ("sfac c n cl\nunit 16 4 2\n", 4, {"C": 4, "N": 1, "Cl": 0.5}),
])
def test_composition_from_shelx_cards(tmp_path, cards, z, expected):
  path = tmp_path / "m.ins"
  path.write_text("TITL m\nCELL 0.71073 10 11 12 90 100 90\nZERR %d 0 0 0 0 0 0\n"
                  "LATT 1\nSYMM -X,0.5+Y,0.5-Z\n%sHKLF 4\nEND\n" % (z, cards))
  sg = sgtbx.space_group_info("P21/c").group()
  composition, note = reflections.composition_from_shelx(str(path), sg)
  assert composition == expected
  assert ("ZERR gives Z = 2, so Z' = 0.5" in note) == (z == 2)


def test_composition_refuses_unknown_sfac(tmp_path):
  path = tmp_path / "m.ins"
  path.write_text("CELL 1 10 10 10 90 90 90\nSFAC C Qq\nUNIT 4 4\nEND\n")
  composition, note = reflections.composition_from_shelx(
    str(path), sgtbx.space_group_info("P1").group())
  assert composition is None and "SFAC Qq is not an element" in note


def test_unmerged_anomalous_data_merged_with_friedel_mates(f_p21):
  """Anomalous unmerged observations: every Friedel mate and equivalent
  averaged into one non-anomalous set; R_int over all of them."""
  fa = df.f_obs("P21", anomalous_flag=True).f_as_f_sq()
  p1 = fa.expand_to_p1()
  unmerged = p1.customized_copy(crystal_symmetry=fa.crystal_symmetry())
  assert unmerged.anomalous_flag() and not unmerged.is_unique_set_under_symmetry()
  data = prepare(unmerged)
  assert not data.f_obs.anomalous_flag()
  assert data.merging["n_observations"] == p1.size()
  assert data.merging["n_unique"] == df.f_obs("P21").size()
  assert data.merging["r_int"] < 1e-6  # no noise, no anomalous signal
  assert any("(Friedel mates averaged)" in n for n in data.notes)


def thpp_molecule_in_a_box(d_min=2.5, noise=0.03, seed=2):
  """The case of issue 11: the non-H atoms of thpp.cif (one atom per
  disordered site) centred in a 40 A cubic P1 cell, U_iso 0.03, intensities
  with 3 % noise (sigma = noise*I + noise*<I>/20) at 2.5 A."""
  import numpy as np
  from cctbx import xray
  xs = xray.structure.from_cif(file_path=thpp_path(".cif"))
  xs = list(xs.values())[0] if isinstance(xs, dict) else xs
  sites, elements = [], []
  for sc in xs.scatterers():
    cart = xs.unit_cell().orthogonalize(sc.site)
    if sc.scattering_type != "H" and all(
        sum((a - b) ** 2 for a, b in zip(cart, c)) > 1.0 for c in sites):
      sites.append(cart)
      elements.append(sc.scattering_type)
  assert len(sites) == 16
  centre = [sum(c[k] for c in sites) / len(sites) for k in range(3)]
  box = xray.structure(crystal_symmetry=crystal.symmetry(
    unit_cell=(40, 40, 40, 90, 90, 90), space_group_symbol="P1"))
  for k, (cart, e) in enumerate(zip(sites, elements)):
    frac = [(x - c) / 40 + 0.5 for x, c in zip(cart, centre)]
    box.add_scatterer(xray.scatterer(label="%s%d" % (e, k + 1), site=frac,
                                     u=0.03, scattering_type=e))
  i = box.structure_factors(d_min=d_min, algorithm="direct").f_calc().intensities()
  rng = np.random.default_rng(seed)
  i_true = i.data().as_numpy_array()
  sig = noise * i_true + noise * i_true.mean() / 20
  i_obs = i_true + rng.normal(size=i_true.size) * sig
  return i.customized_copy(data=flex.double(i_obs), sigmas=flex.double(sig)
                           ).set_observation_type_xray_intensity()


@pytest.fixture(scope="module")
def thpp_box():
  return thpp_molecule_in_a_box()


def test_french_wilson_failure_is_reproduced(thpp_box):
  """cctbx's French-Wilson dies on this valid data set (issue 11)."""
  with pytest.raises(RuntimeError, match="Internal error: i_bin="):
    thpp_box.french_wilson(log=io.StringIO())


def test_french_wilson_falls_back_to_fewer_bins(thpp_box):
  data = prepare(thpp_box, source="thpp box")
  assert data.f_obs.size() == thpp_box.size()
  assert any(n.startswith("French-Wilson failed (default bins: Internal error: "
                          "i_bin=") and "at most 30 resolution bins" in n
             for n in data.notes)
  assert "French-Wilson: %d intensities -> %d amplitudes" % (
    thpp_box.size(), thpp_box.size()) in data.notes
  a, b = data.f_obs.common_sets(thpp_box.f_sq_as_f())
  assert flex.linear_correlation(a.data(), b.data()).coefficient() > 0.99


def test_french_wilson_falls_back_to_xtal_conversion(thpp_box, monkeypatch):
  """When every binning fails: F = sqrt(I), negative I as F = 0 with
  sigma(F) = sqrt(sigma(I)); a note and a warning, never a crash."""
  def always_fails(self, **kwds):
    raise RuntimeError("Internal error: i_bin=1 (simulated)")
  monkeypatch.setattr(miller.array, "french_wilson", always_fails)
  i = thpp_box.deep_copy()
  i.data()[0] = -2.0
  i.sigmas()[0] = 4.0
  data = prepare(i)
  assert data.f_obs.size() == i.size()
  assert data.f_obs.data()[0] == 0 and data.f_obs.sigmas()[0] == pytest.approx(2.0)
  assert data.f_obs.data()[1] == pytest.approx(math.sqrt(i.data()[1]))
  note = [n for n in data.notes if n.startswith("French-Wilson failed with every")]
  assert note and "default bins" in note[0] and "30 bins" in note[0] \
    and "15 bins" in note[0] and "XTAL 3.7" in note[0]
  assert note[0] in data.warnings


def twinned_p21(alpha, seed=0):
  """P2_1 intensities with beta = 90.2 deg, twinned by h,-k,-l."""
  xs = df.structure("P21", unit_cell=(9, 10, 11, 90, 90.2, 90), n_atoms=12, seed=seed)
  i = xs.structure_factors(d_min=0.9).f_calc().intensities()
  cb_op = sgtbx.change_of_basis_op("h,-k,-l")
  mates = miller.set(i.crystal_symmetry(), cb_op.apply(i.indices()), False).map_to_asu()
  twinned = i.data().deep_copy()
  for a, b in miller.match_indices(i.indices(), mates.indices()).pairs():
    twinned[a] = (1 - alpha) * i.data()[a] + alpha * i.data()[b]
  return i.customized_copy(data=twinned, sigmas=0.03 * twinned + 0.01 * flex.mean(twinned)
                           ).set_observation_type_xray_intensity()


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_twinning_is_flagged(alpha):
  import time
  t0 = time.time()
  data = prepare(twinned_p21(alpha))
  seconds = time.time() - t0
  law = data.twinning["twin_laws"][0]
  assert law["operator"] == "h,-k,-l"
  assert law["pair_correlation_fraction"] == pytest.approx(alpha, abs=0.06)
  flagged = [w for w in data.warnings if w.startswith("possible twinning")]
  assert bool(flagged) == (alpha > 0)
  assert data.twinning["l_test_mean_abs_l"] < 0.6
  assert seconds < 1.0


def test_centrosymmetric_statistics_in_an_acentric_group_are_flagged():
  """A centrosymmetric P-1 structure's data read in P1: <|E^2-1|> near the
  centric 0.968, flagged as possible pseudo-symmetry."""
  import random
  from cctbx.development import random_structure
  random.seed(1)
  flex.set_random_seed(1)
  xs = random_structure.xray_structure(
    space_group_info=sgtbx.space_group_info("P-1"), elements=["C"] * 20,
    volume_per_atom=20, u_iso=0.02)
  i = xs.structure_factors(d_min=0.9).f_calc().intensities().expand_to_p1()
  i = i.customized_copy(crystal_symmetry=crystal.symmetry(
    unit_cell=xs.unit_cell(), space_group_symbol="P1"),
    sigmas=0.03 * i.data() + 0.1).set_observation_type_xray_intensity()
  data = prepare(i)
  assert data.twinning["mean_abs_e2_minus_1"] > 0.87
  assert any("look centrosymmetric" in w for w in data.warnings)
  untwinned = prepare(twinned_p21(0.0))
  assert 0.65 < untwinned.twinning["mean_abs_e2_minus_1"] < 0.85
  assert not any("centrosymmetric" in w for w in untwinned.warnings)


def test_severe_incompleteness_is_flagged(f_p21):
  half = f_p21.select(flex.size_t(range(0, f_p21.size(), 2)))
  data = prepare(half)
  assert any(w.startswith("severely incomplete data: 50.") for w in data.warnings)
  assert not any("incomplete" in w for w in prepare(f_p21).warnings)


def test_checks_can_be_switched_off(f_p21):
  data = prepare(f_p21.select(flex.size_t(range(0, f_p21.size(), 2))),
                 params(crystal_checks=False))
  assert data.warnings == [] and data.twinning == {}


@pytest.mark.skipif(not os.path.isdir(MEASURED), reason="measured data not present")
@pytest.mark.parametrize("name", ["ylid_p212121", "ntd106c_p-1"])
def test_measured_unmerged_data(name):
  """Unmerged SHELX HKLF 4 without an .ins (symmetry from meta.json):
  merged with the R_int the depositors report (0.016 and 0.033 anomalous
  merging; here Friedel mates are averaged too), absences reported."""
  import json
  folder = os.path.join(MEASURED, name)
  meta = json.load(open(os.path.join(folder, "meta.json")))
  data = read(os.path.join(folder, "data.hkl"), params(
    unit_cell=" ".join(str(x) for x in meta["cell"]), space_group=meta["sg"]))
  assert data.merging["r_int"] == pytest.approx(meta["r_int"], abs=0.01)
  assert data.composition is None
  merged = read(os.path.join(folder, "data_merged.mtz"))
  assert data.f_obs.size() == merged.f_obs.size()
  if name == "ylid_p212121":
    assert data.absences["n"] == 20 and data.absences["mean_i_over_sigma"] < 3
  assert data.warnings == []


def test_molecule_in_a_large_cell_is_not_called_twinned(thpp_box):
  """A 16-atom molecule in a 40 A cubic P1 cell: its smooth molecular
  transform makes neighbouring reflections correlate (0.92) and would fake
  twinning (twin pairs near the axes) and centric statistics (<|E^2-1|>
  1.15); the crystal tests are skipped with a note instead."""
  data = prepare(thpp_box)
  assert data.twinning["neighbour_correlation"] > 0.8
  assert data.twinning["skipped"].startswith("oversampled")
  assert data.warnings == []
  assert any(n.startswith("twinning and pseudo-symmetry tests skipped") for n in data.notes)
  crystal_data = read(thpp_path(".hkl"))
  assert abs(crystal_data.twinning["neighbour_correlation"]) < 0.3
  assert "skipped" not in crystal_data.twinning


def test_translational_pseudo_symmetry_is_flagged():
  """Two copies of a P2_1 molecule half an a-axis apart (the second moved
  0.1 A at random): h-odd reflections are weak and flagged; without the
  copy nothing is."""
  import random
  from cctbx import xray
  rnd = random.Random(3)
  xs = df.structure("P21", unit_cell=(18, 10, 11, 90, 100, 90), n_atoms=8, seed=3)
  doubled = xs.deep_copy_scatterers()
  for sc in xs.scatterers():
    site = [sc.site[0] + 0.5 + rnd.gauss(0, 0.1 / 18), sc.site[1] + rnd.gauss(0, 0.01),
            sc.site[2] + rnd.gauss(0, 0.01)]
    doubled.add_scatterer(xray.scatterer(label=sc.label + "b", site=site, u=0.02,
                                         scattering_type="C"))
  for structure, flagged in ((doubled, True), (xs, False)):
    i = structure.structure_factors(d_min=0.9).f_calc().intensities()
    i = i.customized_copy(sigmas=0.03 * i.data() + 0.01 * flex.mean(i.data())
                          ).set_observation_type_xray_intensity()
    data = prepare(i)
    ratios = data.twinning["pseudo_translation_ratios"]
    warned = [w for w in data.warnings if w.startswith("translational pseudo-symmetry")]
    assert bool(warned) == flagged, (ratios, data.warnings)
    if flagged:
      assert min(ratios, key=ratios.get) == "(1,0,0)/2" and ratios["(1,0,0)/2"] < 0.2
      assert "(1,0,0)/2" in warned[0]
    else:
      assert min(ratios.values()) > 0.6


def test_d_min_cuts_the_data_and_says_so(f_p21):
  assert "cut to reflections.d_min=2.5" in sorry(prepare, f_p21, params(d_min=2.5, min_reflections=100))  # 78 left
  cut = prepare(f_p21, params(d_min=2.5, min_reflections=50))
  assert cut.f_obs.d_min() >= 2.5 - 1e-6
  assert cut.f_obs.size() == f_p21.resolution_filter(d_min=2.5).size() < f_p21.size()
  assert any("data cut to 2.50 A (reflections.d_min)" in n for n in cut.notes)
  assert prepare(f_p21, params()).f_obs.size() == f_p21.size()


# --------------------------------------------------------------------------
# a SHELXL deposition CIF: the .hkl and .res embedded as text fields

def deposition_cif(path, res=True, names=("_shelx_hkl_file", "_shelx_res_file"),
                   formula="'C10 H10 F2 N4'", z="4"):
  """thpp's measured .hkl (and .ins as the .res) embedded in one CIF, as
  SHELXL writes it for the CSD, COD and IUCr journals."""
  hkl = open(thpp_path(".hkl")).read().strip("\n")
  ins = open(thpp_path(".ins")).read().strip("\n")
  lines = ["data_thpp", "_cell_length_a 6.9196", "_cell_length_b 14.5749", "_cell_length_c 9.7248",
           "_cell_angle_alpha 90", "_cell_angle_beta 90.637", "_cell_angle_gamma 90",
           "_space_group_name_H-M_alt 'P 1 21/n 1'", "loop_", "_space_group_symop_operation_xyz",
           "'x, y, z'", "'-x+1/2, y+1/2, -z+1/2'", "'-x, -y, -z'", "'x-1/2, -y-1/2, z-1/2'",
           "_chemical_formula_sum %s" % formula, "_cell_formula_units_Z %s" % z]
  if res:
    lines += [names[1], ";", ins, ";"]
  lines += [names[0], ";", hkl, ";"]
  path.write_text("\n".join(lines) + "\n")
  return str(path)


@pytest.mark.parametrize("names", [("_shelx_hkl_file", "_shelx_res_file"),
                                   ("_shelx.hkl_file", "_shelx.res_file")])   # CIF1 and DDLm names
def test_a_deposition_cif_is_read_like_its_hkl_and_res(tmp_path, names):
  """The CIF holds no reflection loop, only the .hkl as text: read it as the
  .hkl with the embedded .res beside it -- the same data, symmetry and
  composition, with the CIF named in the notes."""
  data = read(deposition_cif(tmp_path / "dep.cif", names=names))
  direct = read(thpp_path(".hkl"))
  assert_same_amplitudes(data.f_obs, direct.f_obs, tol=1e-6)
  assert data.f_obs.space_group_info().type().number() == 14
  assert data.composition == {"C": 10, "H": 10, "F": 2, "N": 4}
  assert data.merging["n_unique"] == direct.merging["n_unique"]
  assert data.notes[0].startswith("reflections from the SHELX .hkl embedded in dep.cif (data block thpp)")
  assert "composition from dep.cif (_shelx_res_file): UNIT / Z (Z = 4) = C10H10F2N4" in data.notes
  assert data.source.startswith("dep.cif (_shelx_hkl_file)")
  assert not any("tmp" in n for n in data.notes)   # no temporary file names leak


def test_a_deposition_cif_without_res_takes_the_cif_symmetry_and_formula(tmp_path):
  data = read(deposition_cif(tmp_path / "dep.cif", res=False))
  assert data.f_obs.space_group_info().type().number() == 14
  assert data.composition == {"C": 10, "H": 10, "F": 2, "N": 4}
  assert any(n.startswith("composition from dep.cif: _chemical_formula_sum x Z / 4 (Z = 4)")
             for n in data.notes)


@pytest.mark.parametrize("formula,z,expected,said", [
  ("'C20 H20 F4 N8'", "2", {"C": 10, "H": 10, "F": 2, "N": 4}, "Z = 2"),   # a dimer's formula, Z = 2
  ("'C10 H10 F2 N4'", "2", {"C": 5, "H": 5, "F": 1, "N": 2}, "Z = 2"),     # Z' = 1/2
  ("'C10 H10 F2 N4'", "?", None, "without _cell_formula_units_Z"),
  ("'C10 Xx2'", "4", None, "is not a formula of element symbols"),
])
def test_composition_from_cif_formula(tmp_path, formula, z, expected, said):
  path = deposition_cif(tmp_path / "dep.cif", res=False, formula=formula, z=z)
  composition, note = reflections.composition_from_cif(path, sgtbx.space_group_info("P21/n").group())
  assert composition == expected
  assert said in note


def test_a_broken_deposition_cif_is_a_sorry(tmp_path):
  path = tmp_path / "dep.cif"
  path.write_text("data_x\n_shelx_hkl_file\n;\n   1   0   0  10.0  1.0\n")   # the text field never ends
  assert "embeds a SHELX .hkl (_shelx_hkl_file) but is not valid CIF" in sorry(read, str(path))


def test_the_hklf_matrix_of_the_ins_transforms_the_indices(tmp_path, f_p21):
  """HKLF 4 1 r11 ... r33: SHELXL reads h' = r11 h + r12 k + r13 l, ..., and
  the .ins cell belongs to h'.  A .hkl written in another setting (a and c
  swapped, b reversed) with that matrix on its HKLF card gives the data
  back in the .ins cell; a matrix of determinant <= 0 is a Sorry."""
  import numpy as np
  from cctbx.array_family import flex
  matrix = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])        # its own inverse, determinant +1
  i = f_p21.f_as_f_sq()
  as_measured = i.customized_copy(indices=flex.miller_index(
    [tuple(int(v) for v in matrix @ np.array(h)) for h in i.indices()])).set_observation_type(i)
  hkl = df.write_shelx(tmp_path / "x.hkl", as_measured, ins=False)
  ins = df.write_ins(tmp_path / "x.ins", f_p21.crystal_symmetry())
  text = open(ins).read()
  with open(ins, "w") as f:
    f.write(text.replace("HKLF 4", "HKLF 4 1 0 0 1 0 -1 0 1 0 0"))
  data = read(hkl)
  direct = read(df.write_shelx(tmp_path / "direct.hkl", i))      # the same data in the .ins setting
  assert_same_amplitudes(data.f_obs, direct.f_obs, tol=1e-9)
  assert any(n.startswith("indices transformed by the HKLF matrix of x.ins (0 0 1 0 -1 0 1 0 0)")
             for n in data.notes)
  with open(ins, "w") as f:
    f.write(text.replace("HKLF 4", "HKLF 4 1 0 0 1 0 1 0 1 0 0"))    # a and c swapped alone: det -1
  assert "determinant <= 0" in sorry(read, hkl)

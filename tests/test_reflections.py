"""cctbx_p2a.reflections: reading, checking and preparing observed data."""
import cctbx_p2a  # noqa: F401  (must stay the first import)

import io
import math

import pytest
from cctbx import crystal, miller
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

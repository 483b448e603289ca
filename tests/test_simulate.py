"""p2a.simulate end to end: the files it writes, read back by iotbx, gemmi and
cctbx_p2a.reflections, hold the seeded case; reruns are identical; nothing is
overwritten unless asked."""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import)

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from cctbx import uctbx
from libtbx.utils import Sorry, multi_out

from cctbx_p2a import phil, reflections, synthetic
from cctbx_p2a.programs import simulate

SEED = 11


def run_simulate(folder, *args):
  """run_program in `folder`; returns (file names, log text)."""
  from iotbx.cli_parser import run_program
  log = io.StringIO()
  logger = multi_out()
  logger.register("log", log)
  cwd = os.getcwd()
  os.chdir(str(folder))
  try:
    names = run_program(program_class=simulate.Program, args=list(args),
                        logger=logger)
  finally:
    os.chdir(cwd)
  return names, log.getvalue()


def truth(seed=SEED, **overrides):
  return synthetic.make_case(seed, phil.extract("synthetic", **overrides).synthetic)


def by_index(miller_array):
  """{(h,k,l): (value, sigma)} of a miller array."""
  return dict(zip(miller_array.indices(),
                  zip(miller_array.data(), miller_array.sigmas())))


@pytest.fixture(scope="module")
def amplitudes_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("sim_f")
  names, log = run_simulate(folder, "seed=%d" % SEED, "output.shelx=True",
                            "output.hkl_cif=True")
  return folder, names, log


def test_files_and_summary(amplitudes_run):
  folder, names, log = amplitudes_run
  assert names == ["p2a_sim.mtz", "p2a_sim.pdb", "p2a_sim.cif", "p2a_sim.hkl",
                   "p2a_sim.ins", "p2a_sim_hkl.cif"]
  for name in names:
    assert os.path.isfile(str(folder / name)), name
    assert name in log
  assert "16691 FP,SIGFP" in log  # the paper's case: 40 A P1 cell, 2.0 A
  assert "(40, 40, 40, 90, 90, 90)" in log and "10 (C10)" in log
  ins = (folder / "p2a_sim.ins").read_text()
  assert "LATT -1" in ins and "SFAC C" in ins and "UNIT 10" in ins
  assert "HKLF 3" in ins  # amplitudes


def test_mtz_reads_in_iotbx_and_gemmi(amplitudes_run):
  import gemmi
  from iotbx.reflection_file_reader import any_reflection_file
  folder, _, _ = amplitudes_run
  case = truth()
  mtz_file = str(folder / "p2a_sim.mtz")
  arrays = any_reflection_file(mtz_file).as_miller_arrays()
  assert len(arrays) == 1
  f = arrays[0]
  assert f.info().labels == ["FP", "SIGFP"]
  assert f.is_xray_amplitude_array()
  assert f.crystal_symmetry().is_similar_symmetry(case.f_obs.crystal_symmetry())
  assert f.size() == case.f_obs.size()
  mine = by_index(case.f_obs)
  for h, (v, s) in by_index(f).items():
    assert v == pytest.approx(mine[h][0], rel=1e-6, abs=1e-6)
    assert s == pytest.approx(mine[h][1], rel=1e-6, abs=1e-6)
  mtz = gemmi.read_mtz_file(mtz_file)
  assert mtz.column_labels() == ["H", "K", "L", "FP", "SIGFP"]
  assert mtz.nreflections == f.size()
  assert mtz.spacegroup.hm == "P 1"
  assert mtz.cell.parameters == pytest.approx((40, 40, 40, 90, 90, 90))
  table = np.array(mtz, copy=True)  # rows of H K L FP SIGFP
  hkl = [tuple(int(x) for x in row[:3]) for row in table]
  assert np.allclose(table[:, 3], [mine[h][0] for h in hkl], rtol=1e-6, atol=1e-6)
  assert np.allclose(table[:, 4], [mine[h][1] for h in hkl], rtol=1e-6, atol=1e-6)


def test_structure_files_hold_the_truth(amplitudes_run):
  import iotbx.pdb
  from cctbx import xray
  folder, _, _ = amplitudes_run
  xs_true = truth().xray_structure
  from_pdb = iotbx.pdb.input(file_name=str(folder / "p2a_sim.pdb")).xray_structure_simple()
  from_cif = xray.structure.from_cif(file_path=str(folder / "p2a_sim.cif"),
                                     data_block_name="p2a_sim")
  true_cart = xs_true.sites_cart().as_numpy_array()
  for xs, tol in ((from_pdb, 1e-3), (from_cif, 1e-4)):  # PDB: 3 decimals in A
    assert xs.crystal_symmetry().is_similar_symmetry(xs_true.crystal_symmetry())
    assert np.abs(xs.sites_cart().as_numpy_array() - true_cart).max() < tol
    assert [sc.scattering_type for sc in xs.scatterers()] == ["C"] * 10
    assert np.allclose(xs.extract_u_iso_or_u_equiv().as_numpy_array(), 0.02, atol=1e-3)


def test_shelx_and_hkl_cif_read_back(amplitudes_run):
  folder, _, _ = amplitudes_run
  ref = by_index(reflections.read(str(folder / "p2a_sim.mtz")).f_obs)
  hklf3 = reflections.default_params(**{"reflections.hklf": 3})
  for name, params in (("p2a_sim.hkl", hklf3), ("p2a_sim_hkl.cif", None)):
    f = reflections.read(str(folder / name), params).f_obs
    assert f.size() == len(ref)
    assert f.unit_cell().is_similar_to(uctbx.unit_cell((40, 40, 40, 90, 90, 90)))
    for h, (v, s) in by_index(f).items():
      assert v == pytest.approx(ref[h][0], rel=1e-5, abs=1e-5), name
  # the .ins says HKLF 3: without hklf= it is read as amplitudes, with hklf=4 refused, not misread
  assert reflections.read(str(folder / "p2a_sim.hkl")).f_obs.size() == len(ref)
  with pytest.raises(Sorry, match="HKLF 3"):
    reflections.read(str(folder / "p2a_sim.hkl"), reflections.default_params(**{"reflections.hklf": 4}))


def test_intensities_with_noise_all_formats(tmp_path):
  names, log = run_simulate(tmp_path, "seed=%d" % SEED, "observation=intensities",
                            "noise=0.03 0.03", "output.prefix=ii",
                            "output.shelx=True", "output.hkl_cif=True")
  assert "16691 I,SIGI" in log and "noise:         0.03" in log
  case = truth(**{"synthetic.observation": "intensities",
                  "synthetic.noise": "0.03 0.03"})
  assert case.f_obs.is_xray_intensity_array()
  assert (case.f_obs.data() < 0).count(True) > 0  # noisy weak data: some I < 0
  mine = by_index(case.f_obs)
  import gemmi
  assert gemmi.read_mtz_file(str(tmp_path / "ii.mtz")).column_labels() == \
    ["H", "K", "L", "I", "SIGI"]
  assert "HKLF 4" in (tmp_path / "ii.ins").read_text()
  for name, labels in (("ii.mtz", ["I", "SIGI"]), ("ii.hkl", None),
                       ("ii_hkl.cif", None)):
    data = reflections.read(str(tmp_path / name))  # HKLF 4 is the default
    i = data.intensities
    assert i.is_xray_intensity_array() and i.size() == case.f_obs.size(), name
    if labels:
      assert i.info().labels == labels
    for h, (v, s) in by_index(i).items():
      assert v == pytest.approx(mine[h][0], rel=1e-5, abs=1e-4), name
      assert s == pytest.approx(mine[h][1], rel=1e-5, abs=1e-4), name


def test_same_seed_same_files(amplitudes_run, tmp_path):
  from iotbx.reflection_file_reader import any_reflection_file
  folder, names, _ = amplitudes_run
  again, _ = run_simulate(tmp_path, "seed=%d" % SEED, "output.shelx=True",
                          "output.hkl_cif=True")
  assert again == names
  for name in names:
    a, b = str(folder / name), str(tmp_path / name)
    if name.endswith(".mtz"):  # MTZ headers carry a creation time
      fa, fb = [any_reflection_file(x).as_miller_arrays()[0] for x in (a, b)]
      assert list(fa.indices()) == list(fb.indices())
      assert list(fa.data()) == list(fb.data())
      assert list(fa.sigmas()) == list(fb.sigmas())
    else:
      assert open(a, "rb").read() == open(b, "rb").read(), name
  other, _ = run_simulate(tmp_path, "seed=%d" % (SEED + 1), "output.prefix=other")
  assert open(str(tmp_path / "other.pdb")).read() != \
    open(str(tmp_path / "p2a_sim.pdb")).read()


def test_refuses_to_overwrite(tmp_path):
  names, _ = run_simulate(tmp_path, "seed=1", "output.prefix=case")
  os.remove(str(tmp_path / "case.pdb"))
  mtz_before = (tmp_path / "case.mtz").read_bytes()
  with pytest.raises(Sorry) as e:
    run_simulate(tmp_path, "seed=2", "output.prefix=case")
  assert "case.mtz" in str(e.value) and "output.overwrite=True" in str(e.value)
  # refused before anything was written
  assert not (tmp_path / "case.pdb").exists()
  assert (tmp_path / "case.mtz").read_bytes() == mtz_before
  names, _ = run_simulate(tmp_path, "seed=2", "output.prefix=case",
                          "output.overwrite=True")
  assert names == ["case.mtz", "case.pdb", "case.cif"]
  assert (tmp_path / "case.mtz").read_bytes() != mtz_before


def test_bad_arguments(tmp_path):
  with pytest.raises(Sorry, match="seed"):
    run_simulate(tmp_path, "seed=-1")
  with pytest.raises(Sorry, match="does not exist"):
    run_simulate(tmp_path, "seed=1", "output.prefix=no_such_dir/case")
  assert os.listdir(str(tmp_path)) == []


def test_console_entry_point_exit_status(tmp_path):
  """main() returns None so the console script exits 0 (not 1 with the list
  printed); a refusal exits 1 with the Sorry message."""
  cmd = [sys.executable, "-m", "cctbx_p2a.programs.simulate", "seed=3", "--quiet"]
  ok = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr
  assert sorted(os.listdir(str(tmp_path))) == ["p2a_sim.cif", "p2a_sim.mtz", "p2a_sim.pdb"]
  again = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True)
  assert again.returncode == 1
  assert "p2a_sim.mtz already exists" in again.stdout + again.stderr

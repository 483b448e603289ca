"""Small reflection files made with cctbx for the tests (no network, fast)."""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import)

from cctbx import crystal, miller, xray
from cctbx.array_family import flex

CELL = (9.0, 10.0, 11.0, 90.0, 100.0, 90.0)


def structure(space_group="P1", unit_cell=CELL, n_atoms=6, seed=0):
  """A few carbon atoms at reproducible random sites."""
  import random
  rnd = random.Random(seed)
  cs = crystal.symmetry(unit_cell=unit_cell, space_group_symbol=space_group)
  xs = xray.structure(crystal_symmetry=cs)
  for i in range(n_atoms):
    xs.add_scatterer(xray.scatterer(
      label="C%d" % (i + 1), site=[rnd.random() for _ in range(3)],
      u=0.02, scattering_type="C"))
  return xs


def f_obs(space_group="P1", d_min=1.5, anomalous_flag=False, sigmas=True,
          **kwds):
  """Amplitudes (observation type set) with 5%+0.1 sigmas."""
  xs = structure(space_group=space_group, **kwds)
  f = xs.structure_factors(
    d_min=d_min, anomalous_flag=anomalous_flag).f_calc().amplitudes()
  if sigmas:
    f = f.customized_copy(sigmas=f.data() * 0.05 + 0.1)
  return f.set_observation_type_xray_amplitude()


def i_obs(**kwds):
  """Intensities with sigmas (from f_obs)."""
  return f_obs(**kwds).f_as_f_sq()


def with_absences(f, symmorphic="P2"):
  """f plus the reflections its space group makes systematically absent,
  taken from the symmorphic group of the same lattice (P2 for P21)."""
  everything = miller.build_set(
    crystal.symmetry(unit_cell=f.unit_cell(), space_group_symbol=symmorphic),
    anomalous_flag=False, d_min=f.d_min())
  absent = miller.set(f.crystal_symmetry(), everything.indices(), False)
  absent = absent.select(absent.sys_absent_flags().data())
  n = absent.size()
  assert n > 0
  extra = miller.array(absent, flex.double(n, 1.0),
                       flex.double(n, 0.5) if f.sigmas() is not None else None)
  return f.concatenate(extra).set_observation_type(f)


def write_mtz(path, *arrays_and_labels):
  """write_mtz(path, (array, "FP"), (array2, "I"), ...)"""
  (first, label), rest = arrays_and_labels[0], arrays_and_labels[1:]
  ds = first.as_mtz_dataset(column_root_label=label)
  for a, lab in rest:
    ds.add_miller_array(a, column_root_label=lab)
  ds.mtz_object().write(str(path))
  return str(path)


def write_shelx(hkl_path, array, ins=True, hklf=4):
  """SHELX .hkl plus, if ins, a minimal .ins with the array's symmetry."""
  hkl_path = str(hkl_path)
  with open(hkl_path, "w") as out:
    array.export_as_shelx_hklf(out)
  if ins:
    write_ins(hkl_path[:-4] + ".ins", array.crystal_symmetry(), hklf=hklf)
  return hkl_path


def write_ins(path, symmetry, hklf=4):
  from iotbx.shelx.write_ins import LATT_SYMM
  import io
  buf = io.StringIO()
  LATT_SYMM(buf, symmetry.space_group())
  with open(str(path), "w") as out:
    out.write("TITL test\n")
    out.write("CELL 0.71073 %s\n" % " ".join(
      "%.4f" % x for x in symmetry.unit_cell().parameters()))
    out.write("ZERR 1 0.001 0.001 0.001 0 0.01 0\n")
    out.write(buf.getvalue())
    out.write("SFAC C\nUNIT 6\nHKLF %d\nEND\n" % hklf)
  return str(path)


def write_cif(path, array, block="test"):
  """hkl-CIF (coreCIF _refln_F_squared_meas or _refln_F_meas)."""
  import iotbx.cif
  model = iotbx.cif.model.cif()
  model[block] = iotbx.cif.miller_arrays_as_cif_block(
    array, array_type="meas", format="coreCIF").cif_block
  with open(str(path), "w") as out:
    print(model, file=out)
  return str(path)


# The smallest training run that exercises every part of p2a.train (a few
# seconds per run): test_train and test_ddp add their own batch and schedule.
TINY_TRAINING = {
  "synthetic.n_atoms": 3, "synthetic.extent": 2.0, "synthetic.min_distance": 1.5,
  "synthetic.unit_cell": "20 20 20 90 90 90", "synthetic.d_min": "2.5 2.5",
  "patterson.box_edge": 16, "target.output_box_edge": 8, "network.channels": 4,
  "train.warmup_steps": 2, "train.learning_rate": 3e-3,
  "train.validation_cases": 4, "train.data_workers": 0, "train.evaluation_cases": 0,
}

"""cctbx_p2a makes torch, gemmi, scipy and matplotlib safe to import before
cctbx's extensions are used (cctbx-notes §1: otherwise a segfault, exit 139).
Run in a fresh interpreter: this test process has long loaded everything."""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import)

import subprocess
import sys

SCRIPT = """
import cctbx_p2a, torch, gemmi, scipy, scipy.fft, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
from cctbx import crystal, maptbx, miller, xray
from cctbx.array_family import flex
cs = crystal.symmetry(unit_cell=(10, 11, 12, 90, 100, 90), space_group_symbol="P 21")
xs = xray.structure(crystal_symmetry=cs, scatterers=flex.xray_scatterer([
  xray.scatterer(label="C1", site=(0.1, 0.2, 0.3), u=0.02, scattering_type="C"),
  xray.scatterer(label="O1", site=(0.3, 0.1, 0.4), u=0.02, scattering_type="O")]))
f = xs.structure_factors(d_min=1.5).f_calc()
assert isinstance(f, miller.array) and f.size() > 100
m = f.fft_map(resolution_factor=1/3).real_map_unpadded(in_place=False)
t = torch.from_numpy(m.as_numpy_array())
assert abs(float(t.sum())) < 1e6 and gemmi.UnitCell(10, 11, 12, 90, 100, 90).volume > 0
print("ok")
"""


def test_heavy_imports_then_cctbx_in_fresh_interpreter():
  r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, "exit %d (139 = segfault)\n%s" % (r.returncode, r.stderr)
  assert r.stdout.strip().endswith("ok")

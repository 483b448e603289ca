"""Phase a data set from a cctbx script with cctbx_p2a.

    python examples/solve_from_script.py [examples/paper_case.mtz]

Reads amplitudes with iotbx, phases them, prints the result, compares it with
the true structure shipped beside the example, and writes a PDB file.
"""
import cctbx_p2a  # first: makes torch/gemmi/scipy safe to import beside cctbx

import os
import sys

from iotbx.reflection_file_reader import any_reflection_file
from cctbx import euclidean_model_matching as emma
import iotbx.pdb

mtz = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "paper_case.mtz")
f_obs = [a for a in any_reflection_file(mtz).as_miller_arrays() if a.is_xray_amplitude_array()][0]

result = cctbx_p2a.solve(f_obs, **{"solve.composition": "C10"})
result.show()

truth_pdb = os.path.splitext(mtz)[0] + ".pdb"
if os.path.exists(truth_pdb):
  truth = iotbx.pdb.input(file_name=truth_pdb).xray_structure_simple()
  match = emma.model_matches(truth.as_emma_model(), result.xray_structure.as_emma_model(),
                             tolerance=0.5, break_if_match_with_no_singles=False).refined_matches[0]
  print("Matched %d of %d true atoms, rms %.3f A" % (len(match.pairs), truth.scatterers().size(), match.rms))

with open("solved_from_script.pdb", "w") as f:
  f.write(result.xray_structure.as_pdb_file())
print("phases: %d reflections, e.g. %s" % (result.phases.size(), list(result.phases.phases(deg=True).data()[:3])))

"""p2a.solve: phase a reflection file with the Patterson-to-atoms network."""
from __future__ import annotations

import cctbx_p2a  # noqa: F401  (import-order fix before torch)

import json
import os

from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from cctbx_p2a import phil
from cctbx_p2a.programs import common

master_phil_str = phil.master_phil_str("input", "reflections", "solve", "baselines", "placement")


class Program(ProgramTemplate):
  program_name = "p2a.solve"
  description = """
Ab initio phasing of one small isolated molecule from its Patterson map with a
trained 3D convolutional network (Hurwitz 2020), then hand choice and
least-squares refinement with cctbx.

  p2a.solve data.mtz [labels=FP] [composition=C6N2O2] [key=value ...]
  p2a.solve data.hkl [data.ins]          (SHELX; HKLF 3 or 4 read from the .ins)
  p2a.solve data.hkl molecule.xyz        (a known molecule, any orientation: .xyz .mol .sdf, or
                                          solve.molecule=model.pdb / .cif, or solve.smiles=...)

Writes {prefix}.pdb .cif .res .hkl .mtz .json .png (prefix = input stem + _p2a):
.res + .hkl refine in SHELXL/Olex2 as they are; .mtz holds map coefficients.
Exit status 0 when solved, 2 when the run finished but did not solve (the
files are written all the same, marked NOT SOLVED), 1 when refused.
"""
  datatypes = ["phil"]
  master_phil_str = master_phil_str

  def validate(self):
    if not self.params.input.data:
      raise Sorry("No reflection file given: p2a.solve data.mtz (or .hkl, .cif).")

  def run(self):
    from cctbx_p2a import files, known_molecule, phasing, plots, reflections
    p = self.params
    prefix = p.output.prefix or os.path.splitext(os.path.basename(p.input.data))[0] + "_p2a"
    suffixes = [".pdb", ".cif", ".res", ".hkl", ".mtz", ".json", ".png"]
    outputs = [prefix + s for s in suffixes]
    files.check_can_write(outputs, overwrite=p.output.overwrite)
    observed = reflections.read(p.input.data, known_molecule.reflection_params(p))
    observed.show(out=self.logger)
    self.result = phasing.solve(observed, params=p, log=self.logger)
    r = self.result
    files.write_structure(r.xray_structure, prefix, wavelength=observed.wavelength)
    # .res + the merged data it refines against (.hkl, HKLF 4 or 3)
    files.write_shelx_pair(r.xray_structure, observed.observations_for_refinement(), prefix,
                           title="p2a.solve %s" % os.path.basename(p.input.data),
                           wavelength=observed.wavelength, hydrogens=r.hydrogens_per_asymmetric_unit())
    files.write_solution_mtz(r.f_obs, r.f_calc, prefix + ".mtz", wavelength=observed.wavelength)
    summary = r.as_json_dict()
    summary["input"] = os.path.abspath(p.input.data)
    summary["source"] = observed.source
    summary["observed_data"] = observed.as_json_dict()
    with open(prefix + ".json", "w") as f:
      json.dump(summary, f, indent=2)
    plots.solve_figure(r, prefix + ".png")
    print("\nWrote: %s" % ", ".join(outputs), file=self.logger)
    if not r.solved:
      print("NOT SOLVED: the files hold the best attempt; exit status %d." % common.EXIT_NOT_SOLVED,
            file=self.logger)
    self.outputs = outputs

  def get_results(self):
    return self.result


def exit_status(result):
  return common.EXIT_OK if result.solved else common.EXIT_NOT_SOLVED


def main(args=None):
  """Console script p2a.solve; returns the exit status (0 solved, 2 not solved, 1 refused)."""
  return common.run(Program, args, exit_status=exit_status, molecule_key="solve.molecule")


if __name__ == "__main__":
  import sys
  sys.exit(main())

"""p2a.simulate: write one seeded synthetic case, its data and its truth.

The same seed and parameters always give the same files, so a case can be
named by its command line: a worked example, a test input, or data to try
p2a and conventional methods on with the answer known.
"""
from __future__ import absolute_import, division, print_function

import cctbx_p2a  # noqa: F401  (must stay the first import, cctbx-notes §1)

import os

from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from cctbx_p2a import files, phil, synthetic

DEFAULT_PREFIX = "p2a_sim"


class Program(ProgramTemplate):

  program_name = "p2a.simulate"

  description = """
Write one seeded synthetic case after Hurwitz (2020): a random small molecule
in a P1 cell and its simulated data.

  {prefix}.mtz       FP,SIGFP (or I,SIGI with synthetic.observation=intensities)
  {prefix}.pdb/.cif  the true structure
  {prefix}.hkl/.ins  SHELX data and symmetry (output.shelx=True)
  {prefix}_hkl.cif   hkl-CIF data (output.hkl_cif=True)

The defaults are the paper's case: 10 C atoms, 40 A P1 cell, 2.0 A, no noise.
suite=realistic or suite=molecules starts from the settings of that p2a.compare
suite instead (molecules: a real molecule with hydrogens, from RDKit); a
synthetic.* parameter set to other than its default still wins (one set to
its default value cannot be told apart from one left alone: for the paper's
fixed cell with real molecules, leave suite out and give
molecule_source=molecules and the rest yourself).
output.prefix defaults to %s; existing files are kept unless
output.overwrite=True.

Examples:
  p2a.simulate seed=1
  p2a.simulate seed=1 output.prefix=case1 observation=intensities noise="0.03 0.03"
  p2a.simulate suite=molecules seed=3 n_atoms=30 d_min="1.5 1.5"
""" % DEFAULT_PREFIX

  datatypes = ["phil"]

  master_phil_str = phil.master_phil_str("simulate", "synthetic") + """
suite = paper realistic molecules
  .type = choice
  .optional = True
  .help = "Start from the synthetic settings of this p2a.compare suite (paper: the defaults; realistic: the realistic model's distribution; molecules: real molecules with hydrogens, 6-40 non-H atoms). synthetic.* parameters set to other than their defaults override it."
"""

  def custom_init(self):
    # ProgramTemplate's output scope replaces any prefix default we declare
    if self.params.output.prefix is None:
      self.params.output.prefix = DEFAULT_PREFIX
    self.case = None
    self.files = []

  def output_file_names(self):
    prefix = self.params.output.prefix
    names = [prefix + ".mtz", prefix + ".pdb", prefix + ".cif"]
    if self.params.output.shelx:
      names += [prefix + ".hkl", prefix + ".ins"]
    if self.params.output.hkl_cif:
      names.append(prefix + "_hkl.cif")
    return names

  def validate(self):
    if self.params.seed is None or self.params.seed < 0:
      raise Sorry("seed=%s: give a whole number >= 0." % self.params.seed)
    if not self.params.output.prefix or not os.path.basename(
        self.params.output.prefix):
      raise Sorry("output.prefix=%s is not a file stem: give e.g. "
                  "output.prefix=case1 or output.prefix=examples/case1."
                  % self.params.output.prefix)
    files.check_can_write(self.output_file_names(),
                          overwrite=self.params.output.overwrite)

  def run(self):
    out = self.params.output
    prefix = out.prefix
    files.check_can_write(self.output_file_names(), overwrite=out.overwrite)
    case = synthetic.make_case(self.params.seed, self.synthetic_params())
    written = [files.write_mtz(case.f_obs, prefix + ".mtz")]
    written += files.write_structure(case.xray_structure, prefix)
    if out.shelx:
      written += files.write_shelx(case.f_obs, prefix,
                                   xray_structure=case.xray_structure,
                                   title="p2a.simulate seed=%d" % case.seed)
    if out.hkl_cif:
      written.append(files.write_hkl_cif(
        case.f_obs, prefix + "_hkl.cif",
        block=files.cif_block_name(prefix) + "_hkl"))
    self.case, self.files = case, written
    self.show_summary()

  def synthetic_params(self):
    """The synthetic scope: the suite's settings where the user's value is the
    default, the user's value where it is not."""
    from cctbx_p2a import compare
    if not self.params.suite:
      return self.params.synthetic
    defaults = phil.extract("synthetic").synthetic
    given = {k: v for k, v in compare.SUITES[self.params.suite].items()
             if getattr(self.params.synthetic, k) == getattr(defaults, k)}
    return phil.apply_overrides(phil.master_phil("synthetic"),
                                self.params, {"synthetic." + k: v for k, v in given.items()}).synthetic \
      if given else self.params.synthetic

  def show_summary(self):
    case = self.case
    xs, f = case.xray_structure, case.f_obs
    counts = xs.scattering_type_registry().type_count_dict()
    self.header("Synthetic case, seed %d" % case.seed)
    self._print("  unit cell:     (%s)  P 1" % ", ".join(
      "%.4g" % x for x in xs.unit_cell().parameters()))
    self._print("  atoms:         %d (%s)" % (xs.scatterers().size(), " ".join(
      "%s%d" % (e, counts[e]) for e in sorted(counts))))
    if case.molecule is not None:
      self._print("  molecule:      %s, %d non-H atoms (%s), %s" % (
        case.molecule.source, case.molecule.n_atoms, case.molecule.formula(), case.molecule.smiles))
    self._print("  d_min:         %.3f A" % case.d_min)
    self._print("  noise:         %.3g (fraction of I)" % case.noise)
    self._print("  completeness:  %.3f (kept fraction; %.1f %% of the "
                "P1 set)" % (case.completeness, 100 * f.completeness()))
    self._print("  reflections:   %d %s" % (f.size(), "I,SIGI"
      if f.is_xray_intensity_array() else "FP,SIGFP"))
    self._print("  files written:")
    for file_name in self.files:
      self._print("    %s" % file_name)

  def get_results(self):
    """The file names written, in the order above (mtz, pdb, cif, ...)."""
    return list(self.files)


def main(args=None):
  """Console script p2a.simulate; returns the exit status (0 done, 1
  refused), not the file names: call run_program directly for those."""
  from cctbx_p2a.programs import common
  return common.run(Program, args, data_key=None, symmetry_key=None)


if __name__ == "__main__":
  import sys
  sys.exit(main())

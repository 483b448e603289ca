"""p2a.compare: p2a against conventional direct methods on the same data."""
from __future__ import annotations

import cctbx_p2a  # noqa: F401  (import-order fix before torch)

import json
import os

from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from cctbx_p2a import phil
from cctbx_p2a.programs import common

# p2a's own scopes (sites, refinement, success, placement) ride along, so that
# an ablation of the finishing or the verdict is a PHIL argument.  The `solve`
# scope does not: compare sets its composition, seed and force per method, and
# its seed and model would make compare's own seed= and model= ambiguous.
P2A_SCOPES = ("sites", "refinement", "success", "placement")


def p2a_scopes_str():
  """The master PHIL text of P2A_SCOPES (solve.phil holds solve, sites,
  refinement and success; placement.phil placement)."""
  master = phil.master_phil("solve", "placement")
  return "\n".join(obj.as_str(attributes_level=3) for obj in master.objects
                   if obj.name in P2A_SCOPES)


master_phil_str = "\n".join([phil.master_phil_str("input", "compare", "reflections", "baselines"),
                             p2a_scopes_str()])


def solve_params_of(params):
  """p2a's parameters for phasing.solve: the defaults, with this run's
  P2A_SCOPES, baselines and reflections."""
  from cctbx_p2a import phasing
  solve_params = phasing.default_params()
  for name in P2A_SCOPES + ("baselines", "reflections"):
    setattr(solve_params, name, getattr(params, name))
  return solve_params


class Program(ProgramTemplate):
  program_name = "p2a.compare"
  description = """
Run p2a and conventional ab initio methods (charge flipping, tangent formula)
on the same data and score them alike (emma: origin shifts and hand allowed;
solved = every atom within compare.tolerance).

  p2a.compare suite=paper methods=network cases=500 seed=1      (the paper's metric)
  p2a.compare sweep=d_min=1.0,1.5,2.0,2.5,3.0 cases=100          (p2a vs direct methods)
  p2a.compare data.mtz reference=model.pdb                       (your own data)
  p2a.compare measured=../shared/data/measured cuts=native,1.2,1.5,2.0
                                    (published measured sets, in their space groups)

p2a's own PHIL (refinement.*, success.*, sites.*, baselines.*) applies to p2a,
its controls and the polishing of the baselines alike, e.g.
  p2a.compare suite=molecules fix=d_min=2.0 refinement.expand_rounds=0
(the composition, seed and force of each solve are set by compare).

Writes {prefix}.json and {prefix}.png (with a sweep); prefix default p2a_compare.
"""
  datatypes = ["phil"]
  master_phil_str = master_phil_str

  def validate(self):
    c = self.params.compare
    if c.cases < 1:
      raise Sorry("compare.cases must be at least 1.")
    if c.measured and self.params.input.data:
      raise Sorry("Give either a data file (with reference=) or measured=FOLDER, not both.")
    if self.params.input.data and not c.reference:
      raise Sorry("Scoring methods on a data file needs the known structure: reference=model.pdb.")
    if c.reference and not os.path.isfile(c.reference):
      raise Sorry("Reference structure %s not found." % c.reference)

  def run(self):
    from cctbx_p2a import compare, files, plots, reflections
    p, c = self.params, self.params.compare
    solve_params = solve_params_of(p)
    prefix = p.output.prefix or "p2a_compare"
    cuts = [x for item in (c.cuts or []) for x in item.replace(",", " ").split()]
    outputs = [prefix + ".json"] + ([prefix + ".png"] if c.sweep or c.measured else [])
    files.check_can_write(outputs, overwrite=p.output.overwrite)
    if c.measured:
      report = compare.run_on_measured(c.measured, c.methods, cuts, seed=c.seed,
                                       tolerance=c.tolerance, min_fraction=c.min_fraction,
                                       model_name=c.model, log=self.logger, solve_params=solve_params)
      print("\n" + report["table"], file=self.logger)
      self.report = compare.as_json(report)
      self.report["rows"] = report["rows"]
      with open(prefix + ".json", "w") as f:
        json.dump(self.report, f, indent=2, default=str)
      plots.cuts_figure(report["rows"], c.methods, prefix + ".png", title=(
        "p2a.compare on %d measured sets: solved = %.0f %% of published non-H sites within %.2g A"
        % (len(report["sets"]), 100 * c.min_fraction, c.tolerance)))
      print("\nWrote: %s" % ", ".join(outputs), file=self.logger)
      return
    if p.input.data:
      observed = reflections.read(p.input.data, p.reflections)
      observed.show(out=self.logger)
      reference = files.read_structure(c.reference)
      report = compare.run_on_file(observed, reference, c.methods, seed=c.seed,
                                   tolerance=c.tolerance, model_name=c.model,
                                   baselines_params=p.baselines, min_fraction=c.min_fraction,
                                   solve_params=solve_params)
    else:
      report = compare.run_synthetic(c.methods, suite=c.suite, cases=c.cases, seed=c.seed,
                                     sweep=c.sweep, tolerance=c.tolerance, nproc=c.nproc,
                                     model_name=c.model, log=self.logger,
                                     baselines_params=p.baselines, fix=c.fix, solve_params=solve_params,
                                     rows_file=prefix + ".rows.jsonl" if c.keep_rows else None,
                                     fingerprint=self.rows_fingerprint() if c.keep_rows else None,
                                     overwrite=p.output.overwrite)
    print("\n" + compare.format_table(report["summaries"], report["parameter"]), file=self.logger)
    self.report = compare.as_json(report)
    with open(prefix + ".json", "w") as f:
      json.dump(self.report, f, indent=2)
    if c.sweep:
      rows = [dict(s, method=m, **{report["parameter"]: v}) for (m, v), s in report["summaries"]]
      plots.sweep_figure(rows, report["parameter"], prefix + ".png", methods=c.methods,
                         title=sweep_title(report))
    print("\nWrote: %s" % ", ".join(outputs), file=self.logger)

  def rows_fingerprint(self):
    """What a kept row depends on besides its method, sweep point and case
    number: rows are reused only under the same fingerprint."""
    import hashlib
    import cctbx_p2a
    from cctbx_p2a import compare, model_files
    c = self.params.compare
    needs_model = any(m in compare.SOLVE_METHODS + compare.READ_OUT_METHODS for m in c.methods)
    scopes = self.master_phil.format(python_object=self.params)
    text = "\n".join(o.as_str() for o in scopes.objects if o.name not in ("compare", "output", "input"))
    return {"suite": c.suite, "seed": c.seed, "tolerance": c.tolerance, "fix": c.fix, "sweep": c.sweep,
            "model_sha256": model_files.read_card(model_files.resolve_model_path(c.model)).get("sha256")
            if needs_model else None,
            "parameters_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "cctbx_p2a": getattr(cctbx_p2a, "__version__", None), "code_sha256": code_sha256()}

  def get_results(self):
    return self.report


def code_sha256():
  """sha256 over cctbx_p2a's own source (.py and .phil, in path order): kept
  rows of another code are never reused."""
  import hashlib
  import cctbx_p2a
  root = os.path.dirname(os.path.realpath(cctbx_p2a.__file__))
  digest = hashlib.sha256()
  for folder, dirs, names in sorted(os.walk(root, followlinks=True)):
    dirs.sort()
    for name in sorted(names):
      if name.endswith((".py", ".phil")):
        path = os.path.join(folder, name)
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
          digest.update(f.read())
  return digest.hexdigest()


def sweep_title(report):
  """What the cases were, for the PNG: suite, fixed settings, seed, criterion."""
  fixed = ", ".join("%s=%s" % kv for kv in sorted((report.get("fixed") or {}).items()))
  return "p2a.compare, %s suite%s, seed %s: solved = every atom within %.2g A" % (
    report["suite"], " (%s)" % fixed if fixed else "", report.get("seed"), report["tolerance"])


def main(args=None):
  """Console script p2a.compare; returns the exit status (0 done, 1 refused)."""
  return common.run(Program, args, symmetry_key="reflections.symmetry_file")


if __name__ == "__main__":
  import sys
  sys.exit(main())

"""Chosen cases of `suite=molecules`, p2a or its control, with p2a PHIL overrides: an
A/B test of a finishing change on the cases it is meant to fix, and on
cases that must stay solved.

    python benchmarks/molecules_cases.py --cases "10 36 52" --rows a.jsonl [--nproc 2] [--method p2a_untrained] [name=value ...]
    python benchmarks/molecules_cases.py --rows a.jsonl --summary b.jsonl   # compare two runs

Case k is case k of `p2a.compare suite=molecules seed=7` (the same
molecule, cell, resolution, noise and solve seed), and p2a is told the
composition, as there.  Each finished case is appended to --rows as one
JSON line (solved: every non-H atom within 0.5 A; claimed: what p2a.solve
would tell the user).  Why: the suite runs cases 0..n-1 and is refused
when the code changes; a change is judged faster on the cases that
matter, with both arms run side by side on the same machine, since a
single solve's path is sensitive to rounding (the same case solved in one
run and not in the next is common).
"""
import argparse
import functools
import json
import multiprocessing
import os

import cctbx_p2a  # noqa: F401  (import order)

def _init(params):
  """Per process: the suite's own worker set-up, with these p2a settings."""
  from cctbx_p2a import compare
  compare._worker_init("default", None, params)


def run_case(method, k):
  """Case k made and solved exactly as the suite does (compare._synthetic_task),
  as one row of this script's shape."""
  from cctbx_p2a import compare
  row = compare._synthetic_task((method, "molecules", {}, 7, k, 0.5))
  return dict(case=k, method=method, d_min=row["d_min"], n=row["n_reference"], matched=row["n_matched"],
              solved=row["solved"], claimed=bool(row.get("claimed_solved")), r1=row["r1"],
              time_s=row["time_s"], start=row.get("start"), start_detail=row.get("start_detail"),
              heavy_right=row.get("heavy_right", 0), heavy_reference=row.get("heavy_reference", 0),
              notes=row.get("notes", [row.get("error", "")])[-3:])


def summary(a, b):
  """Solved / claimed right / claimed wrong of two runs on their common cases."""
  rows = [{r["case"]: r for r in map(json.loads, open(path))} for path in (a, b)]
  common = sorted(set(rows[0]) & set(rows[1]))
  print("| run | cases | solved | claimed right | claimed wrong | time (s) | solved here only |")
  print("|---|---|---|---|---|---|---|")
  for path, these, other in ((a, rows[0], rows[1]), (b, rows[1], rows[0])):
    print("| %s | %d | %d | %d | %d | %.0f | %s |" % (
      os.path.basename(path), len(common), sum(these[c]["solved"] for c in common),
      sum(these[c]["solved"] and these[c]["claimed"] for c in common),
      sum(these[c]["claimed"] and not these[c]["solved"] for c in common),
      sum(these[c]["time_s"] for c in common),
      " ".join(str(c) for c in common if these[c]["solved"] and not other[c]["solved"]) or "-"))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--cases", default="", help="case numbers, space- or comma-separated")
  ap.add_argument("--rows", required=True, help="JSON-lines file the rows are appended to")
  ap.add_argument("--nproc", type=int, default=2)
  ap.add_argument("--method", default="p2a", choices=("p2a", "p2a_untrained", "p2a_patterson"),
                  help="p2a, or a control of compare's (the same pipeline with another atom map)")
  ap.add_argument("--summary", default=None, help="a second rows file: print both runs side by side")
  ap.add_argument("phil", nargs="*", help="p2a PHIL overrides name=value")
  args = ap.parse_args()
  if args.summary:
    return summary(args.rows, args.summary)
  from cctbx_p2a import phasing, phil
  params = phil.apply_overrides(phil.master_phil(*phasing.SOLVE_SCOPES), None,
                                dict(a.split("=", 1) for a in args.phil))
  cases = [int(c) for c in args.cases.replace(",", " ").split()]
  with multiprocessing.get_context("fork").Pool(args.nproc, initializer=_init, initargs=(params,)) as pool:
    with open(args.rows, "a") as out:
      for row in pool.imap_unordered(functools.partial(run_case, args.method), cases):
        out.write(json.dumps(row) + "\n")
        out.flush()
        print("case %3d  d_min %.2f  %2d/%-2d  %-10s %-12s R1 %.3f  %.0f s  (%s)" % (
          row["case"], row["d_min"], row["matched"], row["n"], "solved" if row["solved"] else "not solved",
          "claimed" if row["claimed"] else "not claimed", row["r1"] or float("nan"), row["time_s"],
          row["start_detail"]), flush=True)


if __name__ == "__main__":
  main()

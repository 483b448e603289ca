"""Tables by d_min band from the rows a `p2a.compare` suite kept.

    python benchmarks/suite_rows_table.py RUN/p2a_compare.rows.jsonl [--bands 1.0,1.5,2.0,2.5] \
      [--rerun a.jsonl --rerun b.jsonl]

`p2a.compare` prints one line per method; issue 11 asks for more: the rate
per resolution band, how many claims ("SOLVED" as p2a.solve would tell the
user) were right and how many wrong, where the heavy atoms landed, and the
cases where the methods differ (the network's margin, case by case).
Only cases finished by every method in the file are counted, so that a
suite stopped part way still compares like with like.  --rerun: rows of
`benchmarks/molecules_cases.py` (the same cases rerun on newer code, with
their method) take the place of the suite's rows for those (case, method);
the table then mixes two code versions, and says how many rows came from
reruns.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict


def read_rows(path):
  """(fingerprint, rows) of a rows file; lines cut short by a kill are skipped."""
  with open(path) as f:
    lines = f.read().splitlines()
  fingerprint = json.loads(lines[0])["fingerprint"]
  rows = []
  for line in lines[1:]:
    try:
      rows.append(json.loads(line))
    except ValueError:
      continue
  return fingerprint, rows


def rerun_rows(path):
  """Rows of benchmarks/molecules_cases.py in the suite's shape (heavy-atom
  fields only where the row has them)."""
  rows = []
  for line in open(path):
    r = json.loads(line)
    row = dict(case=r["case"], method=r.get("method", "p2a"), d_min=r["d_min"], n_reference=r["n"],
               n_matched=r["matched"], solved=r["solved"], claimed_solved=r["claimed"], r1=r["r1"],
               time_s=r["time_s"], rerun=True)
    row.update({k: r[k] for k in ("heavy_right", "heavy_reference") if k in r})
    rows.append(row)
  return rows


def band_of(d_min, edges):
  for lo, hi in zip(edges[:-1], edges[1:]):
    if lo <= d_min < hi + 1e-9:
      return "%.1f-%.1f A" % (lo, hi)
  return "other"


def table(rows, edges):
  methods = sorted({r["method"] for r in rows})
  by_case = defaultdict(dict)
  for r in rows:
    by_case[r["case"]][r["method"]] = r
  cases = sorted(k for k, done in by_case.items() if all(m in done for m in methods))
  lines = ["cases finished by every method (%s): %d (%d-%d)" % (", ".join(methods), len(cases),
                                                              cases[0], cases[-1]) if cases else "none",
           "",
           "| method | d_min | solved | atoms within 0.5 A | claimed and right | claimed and wrong "
           "| right, not claimed | heavy atoms right (solved cases) | median time |",
           "|---|---|---|---|---|---|---|---|---|"]
  bands = sorted({band_of(by_case[k][methods[0]]["d_min"], edges) for k in cases})
  for m in methods:
    for band in bands + ["all"]:
      sel = [by_case[k][m] for k in cases
             if band == "all" or band_of(by_case[k][m]["d_min"], edges) == band]
      if not sel:
        continue
      solved = sum(r["solved"] for r in sel)
      matched = sum(r["n_matched"] for r in sel) / max(1, sum(r["n_reference"] for r in sel))
      right = sum(bool(r.get("claimed_solved")) and r["solved"] for r in sel)
      wrong = sum(bool(r.get("claimed_solved")) and not r["solved"] for r in sel)
      unclaimed = sum(r["solved"] and not r.get("claimed_solved") for r in sel)
      heavy = [(r.get("heavy_right", 0), r.get("heavy_reference", 0)) for r in sel if r["solved"]]
      lines.append("| %s | %s | %s%d/%d (%.0f %%)%s | %.1f %% | %d | %d | %d | %d/%d | %.1f s |" % (
        m, band, "**" if band == "all" else "", solved, len(sel), 100.0 * solved / len(sel),
        "**" if band == "all" else "", 100 * matched, right, wrong, unclaimed,
        sum(h for h, _ in heavy), sum(n for _, n in heavy), statistics.median(r["time_s"] for r in sel)))
  if len(methods) > 1:
    lines.append("")
    for m in methods:
      others = [o for o in methods if o != m]
      only = [k for k in cases if by_case[k][m]["solved"] and not any(by_case[k][o]["solved"] for o in others)]
      lines.append("solved by %s alone: %s" % (m, ", ".join(map(str, only)) or "none"))
  wrong = [(k, m) for k in cases for m in methods
           if by_case[k][m].get("claimed_solved") and not by_case[k][m]["solved"]]
  for k, m in wrong:
    r = by_case[k][m]
    lines.append("wrong claim: case %d, %s, d_min %.2f A, %d of %d atoms right, R1 %.3f" % (
      k, m, r["d_min"], r["n_matched"], r["n_reference"], r["r1"] or float("nan")))
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("rows_file")
  parser.add_argument("--bands", default="1.0,1.5,2.0,2.5",
                      help="d_min band edges (A), comma-separated")
  parser.add_argument("--rerun", action="append", default=[],
                      help="rows of benchmarks/molecules_cases.py replacing the suite's for their cases")
  args = parser.parse_args()
  fingerprint, rows = read_rows(args.rows_file)
  print("settings: %s" % json.dumps(fingerprint, sort_keys=True))
  replaced = {}
  for path in args.rerun:
    replaced.update({(r["case"], r["method"]): r for r in rerun_rows(path)})
  if replaced:
    rows = [replaced.get((r["case"], r["method"]), r) for r in rows]
    print("rows from reruns: %d (%s); their heavy atoms counted only where the rows hold them (%d)" % (
      sum(bool(r.get("rerun")) for r in rows), ", ".join(args.rerun),
      sum(bool(r.get("rerun")) and "heavy_reference" in r for r in rows)))
  print(table(rows, [float(x) for x in args.bands.split(",")]))


if __name__ == "__main__":
  main()

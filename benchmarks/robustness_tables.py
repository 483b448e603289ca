"""Markdown tables from the JSON files of robustness_sweep.sh (run it first,
in the same folder):  python benchmarks/robustness_tables.py [folder]"""
import json
import os
import sys

folder = sys.argv[1] if len(sys.argv) > 1 else "."
SWEEPS = [("dmin", "d_min", "d_min (Å)"), ("noise", "noise", "noise"),
          ("completeness", "completeness", "completeness"), ("n_atoms", "n_atoms", "atoms"),
          ("cell", "cell_edge", "cubic cell edge (Å)")]
for stem, key, label in SWEEPS:
  path = os.path.join(folder, "robust_%s.json" % stem)
  if not os.path.exists(path):
    continue
  report = json.load(open(path))
  settings = report["settings"]
  methods = settings["methods"]
  fixed = ", ".join("%s = %s" % kv for kv in (settings.get("fixed") or {}).items())
  print("### %s%s — %d cases per point, seed %d, %.0f s on %d processes\n" % (
    label, " (%s)" % fixed if fixed else "", settings["cases"], settings["seed"],
    settings["wall_time_s"], settings["nproc"]))
  print("| %s | %s |" % (label, " | ".join(methods)))
  print("|---" * (len(methods) + 1) + "|")
  for i, value in enumerate(settings["values"]):
    cells = []
    for m in methods:
      point = report[m]["points"][i]
      cells.append("%d/%d (%.1f s)" % (round(point["success_rate"] * point["cases"]), point["cases"],
                                       point["median_time_s"]))
    print("| %s | %s |" % (value, " | ".join(cells)))
  print()

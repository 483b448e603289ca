"""Wall time of `p2a.solve` on one paper-domain case, in a fresh process
(start-up included), and the time per stage from its JSON.

    python benchmarks/solve_time.py [repeats]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
bindir = os.path.dirname(sys.executable)
with tempfile.TemporaryDirectory() as d:
  subprocess.run([os.path.join(bindir, "p2a.simulate"), "seed=101", "output.prefix=case"], cwd=d,
                 check=True, capture_output=True)
  print("%-6s %8s  %s" % ("run", "wall s", "stages (s)"))
  for k in range(repeats):
    t0 = time.time()
    subprocess.run([os.path.join(bindir, "p2a.solve"), "case.mtz", "composition=C10",
                    "output.overwrite=True"], cwd=d, check=True, capture_output=True)
    wall = time.time() - t0
    stages = json.load(open(os.path.join(d, "case_p2a.json")))["timings_s"]
    print("%-6d %8.2f  %s" % (k + 1, wall, ", ".join("%s %.2f" % kv for kv in stages.items())))

#!/usr/bin/env bash
# p2a.solve on seeded paper-domain cases: solved = every atom within 0.5 A of
# the truth after origin and hand matching (emma); mean final error.
set -euo pipefail
p2a.compare suite=paper methods=p2a model=${MODEL:-paper} cases=${CASES:-100} seed=${SEED:-11} \
  output.prefix=${PREFIX:-solve_accuracy} output.overwrite=True "$@"

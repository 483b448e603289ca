#!/usr/bin/env bash
# The standard comparison: paper geometry, 100 cases per point, d_min 1.0-3.0 A,
# p2a against charge flipping and the tangent formula, from one run.
set -euo pipefail
p2a.compare suite=paper methods="p2a charge_flipping tangent_formula" \
  sweep=d_min=1.0,1.5,2.0,2.5,3.0 cases=${CASES:-100} seed=${SEED:-5} \
  output.prefix=${PREFIX:-comparison_dmin} output.overwrite=True "$@"

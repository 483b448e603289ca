#!/usr/bin/env bash
# p2a.solve on seeded cases drawn from the default model's training
# distribution (suite=realistic: 4-20 atoms of C/N/O with S in 30 %, U 0.01-0.06,
# d_min 1-3 A, noise 0-10 %, completeness 80-100 %, P1 cells 30-60 A, angles
# 70-110 deg), told the composition (p2a) and not told it (p2a_estimated_count).
# Then the paper's own suite with the same model, to compare with model=paper.
set -euo pipefail
p2a.compare suite=realistic methods="p2a p2a_estimated_count" cases=${CASES:-50} seed=${SEED:-5} \
  output.prefix=${PREFIX:-realistic_suite} output.overwrite=True "$@"
p2a.compare suite=paper methods=p2a cases=${CASES:-50} seed=${SEED:-5} \
  output.prefix=${PREFIX:-realistic_suite}_paper_cases output.overwrite=True "$@"

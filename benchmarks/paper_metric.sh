#!/usr/bin/env bash
# The paper's headline metric (mean distance of true atoms and inverses to the
# nearest peak of the raw atom map) on 500 fresh seeded cases, plus
# atoms within 0.5/1.0 A and inference time per case.
set -euo pipefail
p2a.compare suite=paper methods=network model=${MODEL:-paper} cases=${CASES:-500} seed=${SEED:-1} \
  output.prefix=${PREFIX:-paper_metric} output.overwrite=True "$@"

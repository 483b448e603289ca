#!/usr/bin/env bash
# Success versus d_min, noise, completeness, atom count and cell size on the
# realistic suite: p2a beside its untrained control, charge flipping and the
# tangent formula, the same seeded cases for every method.  The non-d_min
# sweeps hold d_min at 2.5 A so that charge flipping's time per case stays
# bounded on 2 cores.
set -euo pipefail
CASES=${CASES:-6}
METHODS=${METHODS:-"p2a p2a_untrained charge_flipping tangent_formula"}
run() { p2a.compare suite=realistic methods="$METHODS" seed=${SEED:-5} output.overwrite=True "$@"; }
run sweep=d_min=1.5,2.0,2.5,3.0 cases=${CASES_DMIN:-8} output.prefix=robust_dmin
CASES_FLAG=cases=$CASES
run sweep=noise=0,0.05,0.1 fix=d_min=2.5 $CASES_FLAG output.prefix=robust_noise
run sweep=completeness=0.8,0.9,1.0 fix=d_min=2.5 $CASES_FLAG output.prefix=robust_completeness
run sweep=n_atoms=4,12,20 fix=d_min=2.5 $CASES_FLAG output.prefix=robust_n_atoms
run sweep=cell_edge=30,45,60 fix=d_min=2.5 $CASES_FLAG output.prefix=robust_cell

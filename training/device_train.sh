#!/usr/bin/env bash
# One lent-GPU session's training, in one call of the device tool
# (docs/training.md): the `paper` model fine-tuned on the GPU's fast data path,
# and, when asked, the crystal network resumed from its committed checkpoint
# side by side on the one GPU (small networks: neither fills an H100; a 4x
# batch gave the paper run only 1.3x the rate, docs/training.md).
#
#   bash training/make_device_bundle.sh        # here, once: .device/cctbx_bundle.tar.xz
#   device run, carry [".device"], timeout_s 570, command:
#     bash training/device_train.sh MINUTES [PAPER_SEED] [yes: the crystal run too]
#   (P2A_PAPER_BATCH and P2A_PAPER_LR in the environment: the paper run's batch, 32, and peak lr, 1e-3;
#    P2A_PAPER=no: no paper run;
#    P2A_MOLECULES=yes: also train examples/train_molecules_store.phil on training/molecules.npz,
#    batch P2A_MOLECULES_BATCH=32, more PHIL in P2A_MOLECULES_ARGS, its batches made by
#    P2A_MOLECULES_WORKERS=12 CPU processes, probed and planned like the paper run: a warm
#    restart from training/runs/molecules_store/molecules_store.pt when it is there)
#
# Unpacks the trimmed cctbx-base into the device's Python (libtbx finds its
# environment in site-packages) and puts this checkout on PYTHONPATH.
# The crystal run (if asked) starts at once and stops after MINUTES
# (train.max_minutes).  The paper run first measures its own step rate on 80
# steps, then takes 80 % of the steps that fit in MINUTES, so its cosine
# schedule ends where the time does (so does a new molecules run).  Leaves paper.tar, crystals.tar and the
# logs in $OUT; unpack them here and commit what is worth keeping.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-6}
paper_seed=${2:-2030}   # 2026 to 2029 went into the shipped paper model: give each session's run a new one
crystals=${3:-no}       # yes: also resume the crystal network (it overfits its 3,102-crystal store: docs/crystals_network.md 3.6)
out=${OUT:-training/runs/device}
work=$(mktemp -d)
mkdir -p "$out" "$work/paper" "$work/crystals" "$work/molecules"
exec > >(tee "$out/session.log") 2>&1
finish() {   # on any exit, failures included: the logs and whatever was written
  for f in "$work"/*/train.log; do echo "== $f"; tail -4 "$f"; done
  rm -f "$work"/probe_*/*.ckpt "$work"/probe_*/*.pt "$work"/probe_*/*.npz   # a probe keeps its log and card only
  mkdir -p "$work/probe_paper" "$work/probe_molecules"
  tar -cf "$out/paper.tar" -C "$work" paper probe_paper
  tar -cf "$out/crystals.tar" -C "$work" crystals
  tar -cf "$out/molecules.tar" -C "$work" molecules probe_molecules
}
trap finish EXIT
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
device=${P2A_DEVICE:-cuda}; probe=${P2A_PROBE_STEPS:-80}   # overridden only for a dry run on a CPU
batch=${P2A_PAPER_BATCH:-32}; lr=${P2A_PAPER_LR:-1e-3}   # the paper run's batch and peak learning rate
read -r -a extra <<< "${P2A_PAPER_ARGS:-}"   # more PHIL for the paper run, last so it wins: e.g. "train.init_from=None network.channels=16"
if [ "$device" = cuda ] && ! python3 -c 'import cctbx' 2>/dev/null; then   # the device's own Python only
  site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  tar -xJf .device/cctbx_bundle.tar.xz -C "$site"
fi
# this checkout, importable without an install (pyproject maps cctbx_p2a.phil to phil/)
[ -e cctbx_p2a/phil ] || ln -s ../phil cctbx_p2a/phil
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c 'import cctbx_p2a, torch, numpy; from cctbx_p2a import batch_data, crystal_data; from cctbx import xray
print("smoke: torch", torch.__version__, "cuda", torch.cuda.is_available(), "numpy", numpy.__version__)'
train() { python3 -m cctbx_p2a.programs.train "$@"; }

# the crystal network: resume, on every crystal of the committed store (only when asked)
crystals_pid=
if [ "$crystals" = yes ]; then
n=$(python3 -c "import numpy as np; print(len(np.load('training/crystals.npz')['seeds']))")
cp training/runs/crystals/crystals.ckpt "$work/crystals/"
train examples/train_crystals.phil train.output_dir="$work/crystals" train.device="$device" train.threads=1 \
  train.data_workers=12 \
  train.crystal_count="$n" train.max_minutes="$minutes" train.progress_every=200 \
  train.evaluation_cases=0 train.resume="$work/crystals/crystals.ckpt" > "$work/crystals/train.log" 2>&1 &
crystals_pid=$!
fi

# The step count that fits: a run's own probe measures its step rate beside whatever else runs,
# and the run takes 80 % of the steps that fit in MINUTES, so that its cosine schedule ends where
# the time does (on the H200 a run was 17 % slower than its 80-step probe).
planned_steps() {   # LOG BATCH
  python3 - "$1" "$minutes" "$2" <<'EOF'
import re, sys
rows = [(int(s), float(r)) for s, r in re.findall(r"^step (\d+)/\d+ .* ([\d.]+) samples/s", open(sys.argv[1]).read(), re.M)]
(s0, r0), (s1, r1) = rows[1], rows[-1]            # cumulative rates: the rate between steps s0 and s1
samples_per_s = (s1 - s0) / (s1 / r1 - s0 / r0)   # elapsed = step * batch / cumulative rate
print(int(0.8 * samples_per_s * 60 * float(sys.argv[2]) / int(sys.argv[3])))
EOF
}
# probe_then_train NAME BATCH PHIL...: the probe (in $work/probe_NAME), then the run (in $work/NAME)
probe_then_train() {
  local name=$1 b=$2 steps; shift 2
  mkdir -p "$work/probe_$name" "$work/$name"
  train "$@" train.output_dir="$work/probe_$name" train.steps=100000 train.stop_at_step="$probe" \
    train.progress_every=$((probe / 4)) train.evaluation_cases=0 > "$work/probe_$name/train.log" 2>&1 || {
    echo "$name probe failed"; return 1; }
  steps=$(planned_steps "$work/probe_$name/train.log" "$b")
  echo "$name: $steps steps of $b (80% of what the probe's rate fits in $minutes min)"
  train "$@" train.output_dir="$work/$name" train.steps="$steps" \
    train.max_minutes="$(awk "BEGIN{print $minutes + 0.5}")" > "$work/$name/train.log" 2>&1 || {
    echo "$name run failed"; return 1; }
}

# a network for real molecules from the committed molecule store (only with P2A_MOLECULES=yes):
# examples/train_molecules_store.phil, on a probed step count (batch P2A_MOLECULES_BATCH, 32):
# when training/runs/molecules_store/ holds the model of the last part, a warm restart from its
# weights on fresh examples (seed P2A_MOLECULES_SEED, 3032: 3030 and 3031 went into parts 1
# and 2; peak lr P2A_MOLECULES_LR, 5e-4), else from scratch
molecules_pid=
if [ "${P2A_MOLECULES:-no}" = yes ]; then
mbatch=${P2A_MOLECULES_BATCH:-32}
molecules=(examples/train_molecules_store.phil train.device="$device" train.threads=1
           train.data_workers="${P2A_MOLECULES_WORKERS:-12}" train.batch_size="$mbatch"
           train.progress_every=200 train.evaluation_cases="${P2A_MOLECULES_EVALUATION:-0}")
last=training/runs/molecules_store/molecules_store.pt
if [ -f "$last" ]; then
  molecules+=(train.init_from="$last" train.seed="${P2A_MOLECULES_SEED:-3032}"
              train.learning_rate="${P2A_MOLECULES_LR:-5e-4}" train.warmup_steps=100)
fi
read -r -a margs <<< "${P2A_MOLECULES_ARGS:-}"   # more PHIL, last so it wins: e.g. "network.channels=16 train.init_from=None"
molecules+=(${margs[@]+"${margs[@]}"})
probe_then_train molecules "$mbatch" "${molecules[@]}" &
molecules_pid=$!
fi

# the paper model (unless P2A_PAPER=no): its step rate beside the other runs, then the run itself
if [ "${P2A_PAPER:-yes}" = yes ]; then
paper=(train.name=paper_gpu train.seed="$paper_seed" train.init_from=paper train.batch_size="$batch"
       train.learning_rate="$lr" train.warmup_steps=100 train.device="$device" train.threads=2
       train.validate_every=1000 train.checkpoint_every=1000 train.progress_every=200 train.evaluation_cases=200
       ${extra[@]+"${extra[@]}"})
probe_then_train paper "$batch" "${paper[@]}" || true
fi
[ -z "$crystals_pid" ] || wait "$crystals_pid" || echo "crystal run failed"
[ -z "$molecules_pid" ] || wait "$molecules_pid" || echo "molecules run failed"

#!/usr/bin/env bash
# Train the crystal network on a lent GPU machine, in one call of the device
# tool (docs/training.md), resuming the committed checkpoint:
#
#   bash training/make_device_bundle.sh        # here, once: .device/cctbx_bundle.tar.xz
#   device run, carry [".device"], command:
#     bash training/device_train.sh MINUTES [extra p2a.train settings]
#
# Unpacks the trimmed cctbx-base into the device's Python (libtbx finds its
# environment in site-packages), installs this checkout without its
# dependencies, trains for MINUTES on the GPU (bf16 autocast, the fast data
# path on the GPU itself) and leaves the checkpoint, model and card in $OUT.
# Not yet run on a device machine: no GPU was lent when it was written.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-7}; shift || true
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tar -xJf .device/cctbx_bundle.tar.xz -C "$site"
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . >/dev/null
export PYTHONUNBUFFERED=1
out=${OUT:-training/runs/device}
mkdir -p "$out"
cp training/runs/crystals/crystals.ckpt "$out/crystals.ckpt" 2>/dev/null || true
resume=""
[ -f "$out/crystals.ckpt" ] && resume="train.resume=$out/crystals.ckpt"
n=$(python3 -c "import numpy as np; print(len(np.load('training/crystals.npz')['seeds']))")
p2a.train examples/train_crystals.phil train.output_dir="$out" train.device=cuda train.threads=8 \
  train.crystal_count="$n" train.max_minutes="$minutes" train.progress_every=200 $resume "$@" \
  2>&1 | tee "$out/train.log"

#!/usr/bin/env bash
# Build .device/cctbx_bundle.tar.xz: cctbx-base for the lent GPU machine.
#
# The device machine (docs/training.md) has Python 3.12, torch, numpy, six and
# setuptools, but no cctbx, and nothing can be fetched there.  The cp312
# wheel is 81.5 MB, over the 64 MiB that may travel, so this trims it (no
# mmtbx, GUI, viewers, spotfinder, tests) to about 40 MB of xz.  Run it once
# here (it downloads the wheel); training/device_train.sh unpacks it there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device
work=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/whl" "cctbx-base==2025.11"
mkdir "$work/tree"
(cd "$work/tree" && unzip -q "$work"/whl/cctbx_base-*.whl && \
  rm -rf mmtbx mmtbx_*.so gui_resources crys3d rstbx spotfinder* gltbx* wxtbx cctbx_website *test*.so && \
  find . -name "tst_*.py" -delete && \
  find . -name regression -type d -prune -exec rm -rf {} + && \
  find . -name __pycache__ -type d -prune -exec rm -rf {} +)
tar -cJf .device/cctbx_bundle.tar.xz -C "$work/tree" .
rm -rf "$work"
ls -la .device/cctbx_bundle.tar.xz

#!/usr/bin/env bash
# The GPU figures in one device call: Keras on JAX against the PyTorch peer, written as JSON under $OUT.
#
# The machine (nvidia-h200 here) has JAX, PyTorch and NumPy, no TensorFlow and no network; of Keras 3.15.1's
# needs (absl-py, h5py, ml-dtypes, namex, numpy, optree, packaging, rich) it lacks keras, namex and optree
# (/work/.library/device/KINDS.md, "Python packages already there"). They travel as wheels in .whl/, fetched
# once, here, in the repository's root (optree is compiled: CPython 3.12, as there):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
#
# Then one device call, carrying .whl:   run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=600)
# It installs the wheels with pip --no-index into /tmp/site (nothing from the network; skipped where keras is
# importable already), runs `python -m bench.gpu` (see bench/gpu.py: FCN-8s 500x500 latency in float32 and
# bfloat16, training images/s at 320x320 and the fraction of the bf16 peak, the peer on the same GPU) and
# writes $OUT/gpu.json ($OUT unset: ./gpu-out) and $OUT/gpu.log.
#
# On a CPU, to test it: FCN_KERAS_GPU_QUICK=1 OUT=/tmp/g PYTHON=.venv/bin/python bash bench/gpu.sh
# Environment: PYTHON (default python3), FCN_KERAS_GPU_QUICK=1 (tiny sizes), FCN_KERAS_GPU_TRAIN_BATCH (32),
# FCN_KERAS_WHEELS (default .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-./gpu-out}
WHEELS=${FCN_KERAS_WHEELS:-.whl}
mkdir -p "$OUT"

if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("keras") is None)'; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "gpu.sh: keras is not importable and $WHEELS/ holds no wheels: carry them (see this script's header)" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
  --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
"$PY" -m bench.gpu --out "$OUT" 2>&1 | tee "$OUT/gpu.log"

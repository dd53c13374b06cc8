#!/usr/bin/env bash
# Build (once) and cache an mmcv wheel with its compiled ops against the torch installed in $PYTHON.
#
# mmseg 1.2.2 and mmdet 3.3.0 need mmcv >= 2.0.0rc4, < 2.2.0 with `mmcv._ext`. mmcv 2.1.0 is source-only
# on PyPI and, as published, does not build against torch >= 2.10: its setup.py imports pkg_resources
# (gone from setuptools >= 81) and asks for -std=c++14/17 while ATen's headers need C++20. We patch the
# flags, build with setuptools 80.9.0 (still has pkg_resources; torch 2.14 needs >= 77) and keep the wheel in a cache outside the checkout, keyed by the
# mmcv, torch and Python versions. CUDA ops are built when nvcc and a GPU are present, CPU ops otherwise.
#
# Usage: tools/build_mmcv.sh [PYTHON]        prints the wheel's path on its last line
# Env:   VIMAMBA_CACHE (default ~/.cache/vimamba), MMCV_VERSION (default 2.1.0), MAX_JOBS (default nproc)
set -euo pipefail

PYTHON=${1:-python}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE=${VIMAMBA_CACHE:-$HOME/.cache/vimamba}
say() { echo "[build_mmcv] $*" >&2; }
die() { echo "[build_mmcv] error: $*" >&2; exit 1; }

"$PYTHON" -c 'import torch' 2>/dev/null || die "torch is not importable from $PYTHON; install torch first (tools/setup.sh does)"
read -r TORCH_V PY_V CUDA_ON < <("$PYTHON" - <<'PY'
import sys, torch
cuda = torch.version.cuda is not None and torch.cuda.is_available()
print(torch.__version__.split('+')[0], f"cp{sys.version_info.major}{sys.version_info.minor}", int(cuda))
PY
)
FLAVOUR=cpu
if [ "$CUDA_ON" = 1 ] && command -v nvcc >/dev/null 2>&1; then FLAVOUR=cuda; fi
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_V}_${PY_V}_${FLAVOUR}"
DEST="$CACHE/wheels/$KEY"

wheel=$(ls "$DEST"/mmcv-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
    say "cached: $wheel"
    echo "$wheel"
    exit 0
fi

for tool in gcc g++; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: mmcv's ops are C++ and need a compiler (Debian: apt-get install build-essential)"
done
"$PYTHON" -c 'import pkg_resources' 2>/dev/null \
    || die "mmcv's setup.py imports pkg_resources, which this setuptools lacks; install setuptools==80.9.0 (>= 81 drops it)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say "downloading mmcv==$MMCV_VERSION source"
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$WORK" "mmcv==$MMCV_VERSION" \
    || die "could not download the mmcv $MMCV_VERSION source distribution"
tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
SRC="$WORK/mmcv-$MMCV_VERSION"
# ATen's headers in torch >= 2.10 require C++20.
sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"

export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
if [ "$FLAVOUR" = cuda ]; then export FORCE_CUDA=1; else export FORCE_CUDA=0; fi
say "building mmcv $MMCV_VERSION ($FLAVOUR ops) against torch $TORCH_V for $PY_V with $MAX_JOBS jobs;"
say "this compiles about 80 C++ units: roughly 18 minutes on 2 cores. Progress below."
mkdir -p "$DEST"
start=$(date +%s)
set +e
# pip hides the compiler's output unless verbose; report each unit as its compile starts.
"$PYTHON" -m pip wheel -v --no-deps --no-build-isolation -w "$WORK/dist" "$SRC" 2>&1 \
    | tee "$WORK/build.log" \
    | while IFS= read -r line; do
        case "$line" in
            *" -c "*.c*" -o "*|*nvcc*" -c "*) n=$((${n:-0} + 1)); say "compiling unit $n ($(( $(date +%s) - start ))s)" ;;
        esac
    done
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
    tail -n 40 "$WORK/build.log" >&2
    die "mmcv build failed (exit $status); the log's end is above"
fi
mv "$WORK"/dist/mmcv-*.whl "$DEST"/
wheel=$(ls "$DEST"/mmcv-*.whl | head -n 1)
say "built in $(( $(date +%s) - start ))s: $wheel"
echo "$wheel"

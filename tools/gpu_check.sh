#!/usr/bin/env bash
# One call on a GPU machine: the kernels' GPU tests, the kernel table, the downstream speed tables and a
# profile of Vim-T, everything under $OUT (default out/gpu_check). The lent GPU's time is scarce; this is
# the script to run first on a fresh one (about 8 minutes on an H100, 3 more when mamba-ssm is built).
#
# Run from the repository root: bash tools/gpu_check.sh
# Environment:
#   OUT           output folder
#   PY            python (default python3)
#   MAMBA_SDIST   a mamba_ssm sdist to build in the background for the side-by-side rows (its setup.py
#                 restricted to the GPU's arch, e.g. sm_90 only); or
#   MAMBA_PATH    a folder already holding a built mamba_ssm (pip --target)
#   STEPS         which steps, default "tests memorize kernels downstream profile"
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu_check}
PY=${PY:-python3}
STEPS=${STEPS:-"tests memorize kernels downstream profile"}
mkdir -p "$OUT"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

if [ -n "${MAMBA_SDIST:-}" ]; then
    MAMBA_PATH=/tmp/mamba_ssm_build
    (MAMBA_FORCE_BUILD=TRUE MAX_JOBS=$(nproc) $PY -m pip install --no-build-isolation --no-deps --no-index \
        --target "$MAMBA_PATH" "$MAMBA_SDIST" >"$OUT/mamba_build.log" 2>&1; touch "$OUT/.mamba_done") &
fi
$PY -c 'import vimamba.kernels.selective_scan_reference' 2>/dev/null ||
    $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 ||
    { say "pip install -e . failed, see $OUT/pip.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
wait_mamba() {
    [ -n "${MAMBA_SDIST:-}" ] && while [ ! -e "$OUT/.mamba_done" ]; do sleep 2; done
    if [ -n "${MAMBA_PATH:-}" ]; then export PYTHONPATH="$MAMBA_PATH${PYTHONPATH:+:$PYTHONPATH}"; fi
    $PY -c 'import mamba_ssm' 2>/dev/null && say "mamba_ssm importable" || say "no mamba_ssm: triton rows only"
}

for step in $STEPS; do
    case $step in
    tests)
        say "GPU tests"
        $PY -m pytest -q tests/test_kernels.py -k "gpu and not mamba" 2>&1 | tail -3 ;;
    memorize)
        say "training smoke check (every family memorises a fixed batch)"
        $PY tools/memorize_check.py --dtypes bf16,fp16 --backends triton --out "$OUT/memorize_triton.json" 2>&1 |
            grep -E '^(PASS|FAIL)|passed'
        $PY tools/memorize_check.py --dtypes bf16 --backends reference --families atrousmamba,mobilemamba,mair \
            --out "$OUT/memorize_reference.json" 2>&1 | grep -E '^(PASS|FAIL)|passed' ;;
    kernels)
        wait_mamba
        say "kernel table"
        $PY -m pytest -q tests/test_kernels.py -k "mamba_ssm_backend_gpu" 2>&1 | tail -1
        $PY tools/bench_kernels.py --out "$OUT/kernels" 2>&1 | grep -v '^|' | tail -3
        grep '^|' "$OUT/kernels/bench_kernels.md" ;;
    downstream)
        wait_mamba
        say "downstream speed"
        $PY tools/bench_downstream.py --out "$OUT/downstream" 2>&1 | tail -16 ;;
    profile)
        say "profile"
        $PY tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 256 --amp --out "$OUT/profile" 2>&1 |
            head -14
        $PY tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 128 --amp --train \
            --out "$OUT/profile_train" 2>&1 | head -14 ;;
    *)
        say "unknown step $step (tests, memorize, kernels, downstream, profile)" ;;
    esac
done
say "done; files under $OUT"

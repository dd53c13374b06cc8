#!/usr/bin/env bash
# The README's GPU benchmark in one go (about 8 minutes on one H100): every family (a small and a larger
# variant each) and the timm baselines at each model's own resolution, bf16 autocast, inference and
# training step; then the resolution sweep 224..1248 of the plain families against DeiT-Ti/S (inference,
# batch 8). Results go under $OUT (default out/gpu): table/ and sweep/, each with results.md,
# results.json and PNG plots (plots only where matplotlib is installed; render them elsewhere with
# `python tools/benchmark.py --replot OUT/table/results.json --out DIR`).
#
# Run from the repository root: bash tools/gpu_benchmark.sh
# Overrides (environment): OUT, PY, MODELS, BATCH, SWEEP_MODELS, SWEEP_SIZES, SWEEP_BATCH, TABLE_MINUTES,
# SWEEP_MINUTES, BENCH_ARGS (extra options for both runs, e.g. "--backend triton mamba_ssm").
# Needs torch with CUDA, timm and triton; fvcore is optional (without it FLOPs come from
# torch.utils.flop_counter, marked in the JSON), so are matplotlib, rich and tqdm.
set -u
export PYTHONWARNINGS=ignore::FutureWarning,ignore::UserWarning:torch.jit
OUT=${OUT:-out/gpu}
PY=${PY:-python}
mkdir -p "$OUT"
$PY -c 'import vimamba.kernels.reference' 2>/dev/null ||
    $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 ||
    { echo "pip install -e . failed, see $OUT/pip.log"; tail -5 "$OUT/pip.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c 'import fvcore' 2>/dev/null || echo 'fvcore missing: FLOPs from torch.utils.flop_counter'

# Unknown names (a family not registered in this checkout) are skipped with a warning.
# The baselines first: a table cut short by the time budget still has them.
MODELS=${MODELS:-"baselines vim_tiny_patch16_224 vim_small_patch16_224 lbvim_tiny_patch16_224 lbvim_small_patch16_224
shufflemamba_tiny_patch16_reg12_224 shufflemamba_small_patch16_reg12_224 mobilemamba_t2 mobilemamba_s6
mobilemamba_b1 atrousmamba_tiny atrousmamba_small mair_light_t_x2 mair_light_s_x2 mairunet_dehaze"}
COMMON="--amp --warmup 5 --iters 20 --no-progress ${BENCH_ARGS:-}"

# shellcheck disable=SC2086
$PY tools/benchmark.py --models $MODELS --bench both --batch-size "${BATCH:-256}" --max-time 3 \
    --time-budget "${TABLE_MINUTES:-4.5}" $COMMON --out "$OUT/table" 2>&1
# shellcheck disable=SC2086
$PY tools/benchmark.py --models none --sweep ${SWEEP_SIZES:-} --sweep-models ${SWEEP_MODELS:-plain} \
    --sweep-batch "${SWEEP_BATCH:-8}" --max-time 2 \
    --time-budget "${SWEEP_MINUTES:-2.5}" $COMMON --out "$OUT/sweep" 2>&1
ls -l "$OUT"/*/

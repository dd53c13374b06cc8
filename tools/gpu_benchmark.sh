#!/usr/bin/env bash
# The README's GPU benchmark in one go: every family (a small and a larger variant each) and the timm baselines
# at each model's own resolution, bf16 autocast, inference and training step, twice: eager, then with
# torch.compile(mode="reduce-overhead") (CUDA graphs) on every row; then the batch-8 resolution sweep of the
# plain families against DeiT-Ti/S, eager and with CUDA graphs. Results go under $OUT (default out/gpu):
# table/, table_graphs/, sweep/ and sweep_graphs/, each with results.md, results.json and PNG plots (plots only
# where matplotlib is installed; render them elsewhere with
# `python tools/benchmark.py --replot OUT/table/results.json --out DIR`).
#
# Run from the repository root: bash tools/gpu_benchmark.sh
# Overrides (environment): OUT, PY, MODELS, GRAPH_MODELS, BATCH, SWEEP_MODELS, SWEEP_SIZES, SWEEP_BATCH,
# GRAPH_SWEEP_MODELS, GRAPH_SWEEP_SIZES, TABLE_MINUTES, GRAPH_MINUTES (default TABLE_MINUTES), SWEEP_MINUTES,
# STEPS (default "table graphs sweep sweep_graphs"), BENCH_ARGS (extra options for every run, e.g. "--backend
# triton mamba_ssm").
# Needs torch with CUDA, timm and triton; fvcore is optional (without it FLOPs come from
# torch.utils.flop_counter, marked in the JSON), so are matplotlib, rich and tqdm.
set -u
export PYTHONWARNINGS=ignore::FutureWarning,ignore::UserWarning:torch.jit
OUT=${OUT:-out/gpu}
PY=${PY:-python}
mkdir -p "$OUT"
$PY -c 'import vimamba.kernels.selective_scan_reference' 2>/dev/null ||
    $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 ||
    { echo "pip install -e . failed, see $OUT/pip.log"; tail -5 "$OUT/pip.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c 'import fvcore' 2>/dev/null || echo 'fvcore missing: FLOPs from torch.utils.flop_counter'

# Unknown names (a family not registered in this checkout) are skipped with a warning.
# The baselines first: a table cut short by the time budget still has them.
MODELS=${MODELS:-"baselines vim_tiny_patch16_224 vim_small_patch16_224 lbvim_tiny_patch16_224 lbvim_small_patch16_224
shufflemamba_tiny_patch16_reg12_224 shufflemamba_small_patch16_reg12_224 mobilemamba_t2 mobilemamba_s6
mobilemamba_b1 atrousmamba_tiny atrousmamba_small vmamba_tiny_s2l5 mair_light_t_x2 mair_light_s_x2 mairunet_dehaze"}
# Compiling costs up to a minute a model and size: the CUDA-graph runs take the smallest models and sizes
# where launches matter most.
GRAPH_MODELS=${GRAPH_MODELS:-"deit_tiny_patch16_224 swin_tiny_patch4_window7_224 vim_tiny_patch16_224
lbvim_tiny_patch16_224 mobilemamba_t2 atrousmamba_tiny"}
SWEEP_SIZES=${SWEEP_SIZES:-"224 512 1024 2048"}
COMMON="--amp --warmup 5 --iters 20 --no-progress ${BENCH_ARGS:-}"

for step in ${STEPS:-table graphs sweep sweep_graphs}; do
    case $step in
    # shellcheck disable=SC2086
    table) $PY tools/benchmark.py --models $MODELS --bench both --batch-size "${BATCH:-256}" --max-time 3 \
        --time-budget "${TABLE_MINUTES:-4.5}" $COMMON --out "$OUT/table" 2>&1 ;;
    # shellcheck disable=SC2086
    graphs) $PY tools/benchmark.py --models $GRAPH_MODELS --bench both --batch-size "${BATCH:-256}" --max-time 3 \
        --no-flops --compile reduce-overhead --time-budget "${GRAPH_MINUTES:-${TABLE_MINUTES:-4.5}}" $COMMON \
        --out "$OUT/table_graphs" 2>&1 ;;
    # shellcheck disable=SC2086
    sweep) $PY tools/benchmark.py --models none --sweep $SWEEP_SIZES --sweep-models ${SWEEP_MODELS:-plain} \
        --sweep-batch "${SWEEP_BATCH:-8}" --max-time 2 --time-budget "${SWEEP_MINUTES:-2.5}" $COMMON \
        --out "$OUT/sweep" 2>&1 ;;
    # shellcheck disable=SC2086
    sweep_graphs) $PY tools/benchmark.py --models none --sweep ${GRAPH_SWEEP_SIZES:-1024 2048} \
        --sweep-models ${GRAPH_SWEEP_MODELS:-vim_tiny_patch16_224 deit_tiny_patch16_224} \
        --sweep-batch "${SWEEP_BATCH:-8}" --max-time 2 --compile reduce-overhead \
        --time-budget "${SWEEP_MINUTES:-2.5}" $COMMON --out "$OUT/sweep_graphs" 2>&1 ;;
    *) echo "unknown step $step (table, graphs, sweep, sweep_graphs)" ;;
    esac
done
ls -l "$OUT"/*/

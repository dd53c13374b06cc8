#!/usr/bin/env python
"""GPU speed of the downstream models, one selective-scan backend next to another: ms and peak memory.

    python tools/bench_downstream.py --out docs/bench_downstream            # both tasks, fp32
    python tools/bench_downstream.py --task change --dtype fp32 bf16 --backends triton mamba_ssm
    python tools/bench_downstream.py --tiny --device cpu --out /tmp/bench    # CPU smoke test (CI)

Batch 1 inference on whole images: MaIR SR x2 / MaIR-S x2 from 640x360 (MaIR's "@720p out") and 320x180, AWMambaBCD-T
on 256x256 and 1024x1024 pairs; per backend (VIMAMBA_BACKEND, no fallback) and dtype: median CUDA-event ms, peak
memory with weights and inputs, random weights.
"""
import argparse
import contextlib
import json
import runpy
import shlex
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch

import vimamba  # noqa: F401  registers the models with timm
from vimamba.benchmark import environment, free_memory, is_oom, markdown_table, scan_backend, time_step

REPO = Path(__file__).resolve().parents[1]
# AWMambaBCD-T's config (plain Python, no _base_): the benchmark builds what training builds.
BCD_TINY_MODEL = REPO / 'configs' / 'change' / '_base_' / 'models' / 'awmamba_bcd_tiny.py'
TASKS = ('restoration', 'change')
DTYPES = {'fp32': None, 'bf16': torch.bfloat16}
BACKENDS = ('triton', 'mamba_ssm', 'reference')
RATIO = 'triton vs mamba_ssm'


@dataclass(frozen=True)
class Case:
    """One model at one input size. Sizes are (width, height)."""
    task: str
    label: str
    name: str                    # timm name (restoration) or the encoder's name (change)
    size: Tuple[int, int]
    scale: int = 1               # output = scale * input


@dataclass
class Row:
    task: str
    model: str
    name: str
    input: str
    output: str
    dtype: str
    backend: str
    params: int
    status: str = 'ok'           # 'ok', 'OOM' or 'error'
    ms: Optional[float] = None   # median over the timed forwards
    ms_min: Optional[float] = None
    iters: int = 0
    peak_mib: Optional[float] = None
    ratio: Optional[float] = None
    error: str = ''
    times_ms: List[float] = field(default_factory=list)


def cases(task: str, tiny: bool) -> List[Case]:
    """The benchmark rows, or their tiny stand-ins for a CPU smoke test."""
    if tiny:
        table = [
            Case('restoration', 'MaIR (test_mair) x2', 'test_mair', (64, 64), 2),
            Case('restoration', 'MaIR (test_mair) x2', 'test_mair', (32, 32), 2),
            Case('change', 'AWMambaBCD (test_atrousmamba)', 'test_atrousmamba', (64, 64)),
            Case('change', 'AWMambaBCD (test_atrousmamba)', 'test_atrousmamba', (128, 128)),
        ]
    else:
        table = [
            Case('restoration', 'MaIR SR x2', 'mair_sr_x2', (640, 360), 2),
            Case('restoration', 'MaIR SR x2', 'mair_sr_x2', (320, 180), 2),
            Case('restoration', 'MaIR-S x2', 'mair_light_s_x2', (640, 360), 2),
            Case('restoration', 'MaIR-S x2', 'mair_light_s_x2', (320, 180), 2),
            Case('change', 'AWMambaBCD-T', 'atrousmamba_tiny', (256, 256)),
            Case('change', 'AWMambaBCD-T', 'atrousmamba_tiny', (1024, 1024)),
        ]
    return [c for c in table if task in ('all', c.task)]


def bcd_net_kwargs(tiny: bool) -> Dict:
    """BinaryChangeNet arguments: those of the AWMambaBCD-T config, or the tiny network of the tests."""
    if tiny:
        return dict(encoder=dict(model_name='test_atrousmamba', model_kwargs=dict(depths=(1, 1, 1, 1))),
                    decoder=dict(width=16, window_size=4, decoder_atrous_rates=(1, 2)))
    model = dict(runpy.run_path(str(BCD_TINY_MODEL))['model'])
    # Training-only keys; the ImageNet checkpoint does not change speed.
    for key in ('type', 'lovasz_weight', 'ignore_index', 'test_cfg', 'data_preprocessor', 'init_cfg'):
        model.pop(key, None)
    model['encoder'] = {k: v for k, v in model['encoder'].items() if k != 'checkpoint'}
    return model


def build(case: Case, tiny: bool, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if case.task == 'restoration':
        model = timm.create_model(case.name)
    else:
        from vimamba.downstream.change_detection.inference import build_change_net
        model = build_change_net('bcd', **bcd_net_kwargs(tiny))
    return model.to(device).eval()


def make_inputs(case: Case, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Fixed-seed images in [0, 1], (1, 3, H, W): one for restoration, a pair for change detection."""
    width, height = case.size
    generator = torch.Generator().manual_seed(0)
    count = 1 if case.task == 'restoration' else 2
    return tuple(torch.rand(1, 3, height, width, generator=generator).to(device) for _ in range(count))


def precision(device: torch.device, dtype: str):
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def timed_peak(step: Callable[[], object], device: torch.device, iters: int) -> Tuple[List[float], Optional[float]]:
    """Per-forward ms of `iters` timed calls and the allocator's peak (MiB) over them (None on a CPU)."""
    if device.type != 'cuda':
        return time_step(step, device, 0, iters), None
    torch.cuda.synchronize(device)  # the warm-up's kernels finish before the peak counter restarts
    torch.cuda.reset_peak_memory_stats(device)
    times = time_step(step, device, 0, iters)
    return times, torch.cuda.max_memory_allocated(device) / 2 ** 20


def measure(model: torch.nn.Module, inputs: Sequence[torch.Tensor], row: Row, device: torch.device,
            warmup: int, iters: int, tile: int) -> Row:
    """Fill `row` with the timing of `model(*inputs)`; OOM and errors land in `row.status`, not stopping the others."""
    if tile and row.task == 'restoration':
        def step():
            return model.forward_tiled(inputs[0], tile)
    else:
        def step():
            return model(*inputs)
    try:
        with scan_backend(row.backend), torch.inference_mode(), precision(device, row.dtype):
            time_step(step, device, warmup, 0)  # warm-up: allocator, cuDNN and Triton autotuning
            times, row.peak_mib = timed_peak(step, device, iters)
        row.times_ms = [round(t, 4) for t in times]
        row.ms, row.ms_min, row.iters = statistics.median(times), min(times), len(times)
    except Exception as e:  # noqa: BLE001  a row's failure is a result, reported in the table
        row.status = 'OOM' if is_oom(e) else 'error'
        row.error = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300]
    free_memory(device)  # after the except block, so the traceback no longer pins the failed forward's tensors
    return row


def add_ratios(rows: Sequence[Row]) -> None:
    """ms(mamba_ssm) / ms(triton) on each triton row that has a mamba_ssm twin (same model, size, dtype)."""
    by_key = {(r.model, r.input, r.dtype, r.backend): r for r in rows if r.status == 'ok'}
    for r in rows:
        other = by_key.get((r.model, r.input, r.dtype, 'mamba_ssm'))
        if r.backend == 'triton' and r.status == 'ok' and other is not None:
            r.ratio = other.ms / r.ms


def wxh(size: Tuple[int, int], scale: int = 1) -> str:
    return f'{size[0] * scale}x{size[1] * scale}'


def run_case(case: Case, args, device: torch.device) -> List[Row]:
    print(f'{case.label} {wxh(case.size)} -> {wxh(case.size, case.scale)}: building', flush=True)
    model = build(case, args.tiny, device)
    params = sum(p.numel() for p in model.parameters())
    inputs = make_inputs(case, device)
    rows = []
    for dtype in args.dtype:
        for backend in args.backends:
            row = Row(case.task, case.label, case.name, wxh(case.size), wxh(case.size, case.scale), dtype,
                      backend, params)
            rows.append(measure(model, inputs, row, device, args.warmup, args.iters, args.tile))
            print('  ' + summary(rows[-1]), flush=True)
    del model, inputs
    free_memory(device)
    return rows


HEADER = ('model', 'input', 'output', 'params (M)', 'dtype', 'backend', 'ms', 'peak MiB', RATIO)


def summary(r: Row) -> str:
    if r.status != 'ok':
        return f'{r.dtype} {r.backend}: {r.status} {r.error}'
    peak = '' if r.peak_mib is None else f', peak {r.peak_mib:,.0f} MiB'
    return f'{r.dtype} {r.backend}: {r.ms:.2f} ms (median of {r.iters}){peak}'


def table_row(r: Row) -> Tuple[str, ...]:
    ms = f'{r.ms:.1f}' if r.status == 'ok' else r.status
    peak = '-' if r.peak_mib is None else f'{r.peak_mib:,.0f}'
    ratio = '-' if r.ratio is None else f'{r.ratio:.2f}x'
    return (r.model, r.input, r.output, f'{r.params / 1e6:.2f}', r.dtype, r.backend, ms, peak, ratio)


def task_tables(rows: Sequence[Row]) -> Dict[str, str]:
    return {task: markdown_table(HEADER, [table_row(r) for r in rows if r.task == task])
            for task in TASKS if any(r.task == task for r in rows)}


def write_markdown(path: Path, env: Dict, settings: Dict, rows: Sequence[Row]) -> None:
    titles = {'restoration': 'Restoration (one image, LR input -> output)',
              'change': 'Change detection (one image pair)'}
    peak = ('torch.cuda.max_memory_allocated, weights and inputs included' if env['device_type'] == 'cuda'
            else 'not measured on a CPU')
    lines = ['# Downstream speed (tools/bench_downstream.py)', '',
             f'{env["device"]}; torch {env["torch"]}, triton {env.get("triton", "-")}, timm {env["timm"]}; '
             f'commit {env.get("commit") or "-"}; {settings["date"]}', '',
             f'`{settings["command"]}`', '',
             f'Batch 1, inference, whole image per forward; median ms of {settings["iters"]} forwards after '
             f'{settings["warmup"]} warm-up; peak memory: {peak}. Random weights and '
             f'images (speed does not depend on them). {RATIO}: ms(mamba_ssm) / ms(triton), above 1 = triton faster.',
             '']
    for task, table in task_tables(rows).items():
        lines += [f'## {titles[task]}', '', table, '']
    errors = [r for r in rows if r.status == 'error']
    if errors:
        lines += ['Errors:', ''] + [f'- {r.model} {r.input} {r.dtype} {r.backend}: {r.error}' for r in errors] + ['']
    path.write_text('\n'.join(lines))


def print_table(rows: Sequence[Row]) -> None:
    body = [HEADER] + [table_row(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADER))]
    left = {0, 1, 4, 5}  # text columns; numbers align right
    for n, line in enumerate(body):
        print('  '.join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            print('  '.join('-' * w for w in widths))


def mamba_ssm_available() -> bool:
    """Whether mamba_ssm and its CUDA extension load (vimamba.ops lists the backend even without the package)."""
    from vimamba.kernels import mamba_ssm_backend
    return mamba_ssm_backend.available()


def default_backends(device: torch.device) -> List[str]:
    """triton, plus mamba_ssm where it loads, on a GPU; the reference elsewhere."""
    if device.type != 'cuda':
        return ['reference']
    return ['triton'] + (['mamba_ssm'] if mamba_ssm_available() else [])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--task', choices=TASKS + ('all',), default='all')
    p.add_argument('--backends', nargs='+', choices=BACKENDS, default=None,
                   help='selective-scan backends, one row each (default: triton, plus mamba_ssm when it imports; '
                        'reference on a CPU). reference is a Python loop over the tokens: minutes per forward at '
                        'the full sizes, use it with --tiny')
    p.add_argument('--dtype', nargs='+', choices=tuple(DTYPES), default=['fp32'],
                   help='fp32, and/or bf16 through autocast')
    p.add_argument('--warmup', type=int, default=3, help='untimed forwards per row (include Triton autotuning)')
    p.add_argument('--iters', type=int, default=10, help='timed forwards per row (the median is reported)')
    p.add_argument('--tile', type=int, default=0,
                   help='restoration: MaIR forward_tiled with this tile size (official test tiling); 0 = whole image')
    p.add_argument('--tiny', action='store_true', help='tiny test models at 32..128 pixels: a CPU smoke test for CI')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out', type=Path, default=None, help='folder for results.md and results.json')
    return p


def check_args(args, device: torch.device) -> None:
    if args.warmup < 0 or args.iters < 1:
        raise SystemExit(f'bench_downstream: --warmup must be >= 0 and --iters >= 1, got {args.warmup}, {args.iters}')
    if args.tile < 0:
        raise SystemExit(f'bench_downstream: --tile must be >= 0 (0 = whole image), got {args.tile}')
    if device.type != 'cuda' and not args.tiny:
        print('bench_downstream: no CUDA device: full-size rows on the CPU take a long time (use --tiny for a '
              'smoke test)', file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> List[Row]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    check_args(args, device)
    args.backends = list(dict.fromkeys(args.backends or default_backends(device)))
    args.dtype = list(dict.fromkeys(args.dtype))
    rows = [row for case in cases(args.task, args.tiny) for row in run_case(case, args, device)]
    add_ratios(rows)
    print()
    print_table(rows)
    if args.out is not None:
        settings = dict(command=shlex.join(['python', 'tools/bench_downstream.py'] + argv),
                        date=datetime.now(timezone.utc).isoformat(timespec='seconds'), task=args.task,
                        backends=args.backends, dtype=args.dtype, warmup=args.warmup, iters=args.iters,
                        tile=args.tile, tiny=args.tiny)
        env = dict(environment(device), mamba_ssm=mamba_ssm_available(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(args.out / 'results.md', env, settings, rows)
        (args.out / 'results.json').write_text(
            json.dumps(dict(environment=env, settings=settings, rows=[asdict(r) for r in rows]), indent=1))
        print(f'\nwrote {args.out / "results.md"} and {args.out / "results.json"}')
    return rows


if __name__ == '__main__':
    sys.exit(1 if any(r.status == 'error' for r in main()) else 0)

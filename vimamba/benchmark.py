"""Build every registered vimamba model and run it once: the library's smoke benchmark.

`tools/benchmark.py` is the command-line entry point.
"""
import argparse
import time
from dataclasses import dataclass

import torch
import timm

from .registry import list_models


@dataclass
class Row:
    name: str
    params_m: float
    input_size: tuple
    output_shape: tuple
    forward_ms: float


def default_device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def run_model(name: str, device: torch.device, batch_size: int = 1, img_size: int | None = None) -> Row:
    model = timm.create_model(name, pretrained=False).to(device).eval()
    input_size = tuple(model.pretrained_cfg['input_size'])
    if img_size is not None:
        input_size = (input_size[0], img_size, img_size)
    x = torch.randn(batch_size, *input_size, device=device)
    with torch.inference_mode():
        model(x)  # warm-up: first calls compile kernels and fill caches
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(x)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    return Row(name, params / 1e6, input_size, tuple(out.shape), elapsed * 1e3)


def format_table(rows: list[Row]) -> str:
    header = ('model', 'params (M)', 'input', 'output', 'forward ms')
    body = [(r.name, f'{r.params_m:.2f}', 'x'.join(map(str, r.input_size)), 'x'.join(map(str, r.output_shape)),
             f'{r.forward_ms:.1f}') for r in rows]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |' for row in [header] + body]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='*', default=None,
                        help='model names or timm wildcards (default: every registered vimamba model)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--img-size', type=int, default=None, help='square input size (default: each model\'s own)')
    parser.add_argument('--device', default=None, help='cpu, cuda, ... (default: cuda when available)')
    args = parser.parse_args(argv)

    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    names = list_models(include_test=True) if args.models else list_models()
    if args.models:
        wanted = [n for pattern in args.models for n in timm.list_models(pattern) if n in names]
        unknown = [p for p in args.models if not timm.list_models(p) or not set(timm.list_models(p)) & set(names)]
        if unknown:
            parser.error(f'--models: no vimamba model matches {unknown}; registered: {", ".join(list_models())}')
        names = list(dict.fromkeys(wanted))
    device = torch.device(args.device) if args.device else default_device()

    rows = []
    for i, name in enumerate(names, 1):
        print(f'[{i}/{len(names)}] {name}', flush=True)
        rows.append(run_model(name, device, args.batch_size, args.img_size))
    print(f'\ndevice: {device}' + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''))
    print(format_table(rows))
    return rows

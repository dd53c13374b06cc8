"""The Vim mixer's skinny projections (x_proj: E -> R + 2N, dt_proj: R -> E, one weight per direction) against their
byte floor, forward and forward + backward, for several row splits of `direction_matmul` (1: one product per
direction, the plain `bmm`). bf16 autocast as in training; median ms of CUDA events after warm-up.

    python tools/bench_projections.py [--shapes vim_t,vim_t_b128] [--splits 1,4,16,32,64] [--out FILE.json]
"""
import argparse
import json
import statistics
import sys

import torch

from vimamba.benchmark import time_step
from vimamba.layers.mamba import direction_matmul, row_splits

# name: (batch, K, tokens, E, R, N)
SHAPES = {
    "vim_t": (256, 2, 197, 384, 12, 16),
    "vim_t_b128": (128, 2, 197, 384, 12, 16),
    "vim_s_b128": (128, 2, 197, 768, 24, 16),
    "vim_t_1024_b8": (8, 2, 4097, 384, 12, 16),
}


def floor_ms(batch, K, L, E, R, N, train, bandwidth):
    """Each tensor read or written once in bf16: u, x_dbl, delta; with the backward also their gradients."""
    rows, width = batch * L * K, R + 2 * N
    elements = rows * (E + width + E) + (rows * (E + width + E + E) if train else 0)
    return 2 * elements / bandwidth * 1e3


def measure(name, splits, warmup, iters):
    batch, K, L, E, R, N = SHAPES[name]
    dev = torch.device("cuda")
    u = torch.randn(K, batch * L, E, device=dev, dtype=torch.bfloat16, requires_grad=True)
    w_x = torch.randn(K, R + 2 * N, E, device=dev, requires_grad=True)
    w_dt = torch.randn(K, E, R, device=dev, requires_grad=True)
    grad = torch.randn(K, batch * L, E, device=dev, dtype=torch.bfloat16)

    def forward():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x_dbl = direction_matmul(u, w_x, splits)
            return direction_matmul(x_dbl[..., :R], w_dt, splits), x_dbl

    def train():
        delta, x_dbl = forward()
        torch.autograd.backward((delta, x_dbl[..., R:]), (grad, torch.ones_like(x_dbl[..., R:])))

    def infer():
        with torch.no_grad():
            forward()
    return {pass_: statistics.median(time_step(step, dev, warmup, iters))
            for pass_, step in (("fwd", infer), ("fwd+bwd", train))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--splits", default="1,4,16,32,64")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--out", default=None, help="JSON file for the rows")
    args = p.parse_args(argv)
    unknown = [s for s in args.shapes.split(",") if s not in SHAPES]
    if unknown:
        p.error(f"--shapes: unknown {unknown}; expected names from {sorted(SHAPES)}")
    try:
        splits = sorted({int(s) for s in args.splits.split(",")})
    except ValueError:
        splits = [0]
    if any(s < 1 for s in splits):
        p.error(f"--splits: expected positive ints, got {args.splits!r}")
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    # read + write bandwidth of a large copy
    a = torch.empty(1 << 28, device="cuda", dtype=torch.uint8)
    ms = statistics.median(time_step(lambda: a.clone(), torch.device("cuda"), 5, 20))
    bandwidth = 2 * a.numel() / (ms / 1e3)
    rows = []
    print(f"{torch.cuda.get_device_name()}; copy {bandwidth / 1e9:.0f} GB/s; default splits = row_splits(rows, batch)")
    print("| shape | splits | fwd ms | floor | fwd+bwd ms | floor |\n|---|---:|---:|---:|---:|---:|")
    for name in args.shapes.split(","):
        batch, K, L, E, R, N = SHAPES[name]
        default = row_splits(batch * L, batch)
        for s in sorted({*[s for s in splits if batch % s == 0], default}):
            t = measure(name, s, args.warmup, args.iters)
            f = [floor_ms(batch, K, L, E, R, N, train, bandwidth) for train in (False, True)]
            rows.append(dict(shape=name, splits=s, default=s == default, fwd_ms=t["fwd"], fwd_bwd_ms=t["fwd+bwd"],
                             floor_fwd_ms=f[0], floor_fwd_bwd_ms=f[1]))
            mark = " (default)" if s == default else ""
            print(f"| {name} | {s}{mark} | {t['fwd']:.3f} | {f[0]:.3f} | {t['fwd+bwd']:.3f} | {f[1]:.3f} |", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())

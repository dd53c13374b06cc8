"""The CPU floor of a model's selective scans, next to their time under the reference backend.

    python tools/cpu_floor.py [--model vim_tiny_patch16_224] [--threads 2] [--repeats 5]

Per state and step: one exponential and four multiply-adds, at the rates of torch's exp2 and a 1024 x 1024 fp32
matmul on this CPU. Floor = exps / exp-rate + MACs / MAC-rate; "share" = floor / median time of the scan calls.
"""
import argparse
import statistics
import time

import torch


def _median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='vim_tiny_patch16_224')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import timm
    import vimamba  # noqa: F401
    from vimamba.kernels import selective_scan_reference as reference

    model = timm.create_model(args.model).eval()
    x = torch.randn((1,) + tuple(model.pretrained_cfg['input_size']))
    calls = []
    forward = reference._forward_inference

    def record(*inputs):
        calls.append(inputs)
        return forward(*inputs)

    reference._forward_inference = record
    try:
        with torch.inference_mode():
            model(x)
    finally:
        reference._forward_inference = forward
    states = sum(u.shape[0] * u.shape[1] * u.shape[2] * u.shape[3] * A.shape[-1] for u, _, A, *_ in calls)
    exps, macs = states, 4 * states

    # Into preallocated outputs: a fresh 64 MB result per call would time the page faults, not the arithmetic.
    big, out = torch.randn(1 << 24), torch.empty(1 << 24)
    exp_rate = big.numel() / _median_seconds(lambda: torch.exp2(big, out=out), args.repeats)
    m, product = torch.randn(1024, 1024), torch.empty(1024, 1024)
    mac_rate = 1024 ** 3 / _median_seconds(lambda: torch.mm(m, m, out=product), args.repeats)
    with torch.inference_mode():
        scan_s = _median_seconds(lambda: [forward(*c) for c in calls], args.repeats)
        model_s = _median_seconds(lambda: model(x), args.repeats)
    floor_s = exps / exp_rate + macs / mac_rate
    print(f'{args.model}, batch 1, {args.threads} threads, {len(calls)} scan calls')
    print(f'scan work per image: {exps / 1e6:.1f} M exponentials, {macs / 1e6:.1f} M multiply-adds')
    print(f'this CPU: {exp_rate / 1e9:.2f} G exp2/s, {mac_rate / 1e9:.1f} G multiply-adds/s (1024^2 matmul)')
    print(f'floor of the scans: {floor_s * 1e3:.1f} ms; measured scans {scan_s * 1e3:.1f} ms '
          f'({100 * floor_s / scan_s:.0f}% of the floor); whole model {model_s * 1e3:.1f} ms')


if __name__ == '__main__':
    main()

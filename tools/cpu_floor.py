"""The CPU floor of a model's selective scans: count their exponentials and multiply-adds per image, measure what
this CPU does per second, and time the scans as the reference backend runs them.

    python tools/cpu_floor.py [--model vim_tiny_patch16_224] [--threads 2] [--repeats 5]

Per state and step the scan needs one exponential (exp(delta * A)) and four multiply-adds (delta * A, delta * u * B,
the update a * h + b, the contraction with C). The rates are torch's own on large contiguous fp32 tensors: exp2 (what
the reference's inference path calls) and a 1024 x 1024 matmul for multiply-adds. The floor is exps / exp-rate +
multiply-adds / MAC-rate; "share" is that floor over the measured time of the model's scan calls (medians).
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

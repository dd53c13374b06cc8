"""Where a model's time goes: device (or CPU) time per operator group, from one profiled forward or training step;
on CUDA also the host's time per group and the unprofiled step's wall time (wall above device: bound by the host).

    python tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 256 --amp            # GPU inference
    python tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 128 --amp --train    # + backward
    python tools/profile_model.py --model mobilemamba_t2 --out docs/profile                      # md + json
    python tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 256 --amp --compile default

Each operator's self time is charged to one group; everything inside the scan op counts as `selective_scan`.
"""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from vimamba import benchmark  # registers the models too

# group -> substrings of operator names; the first group that matches wins, the rest is "other".
GROUPS = (
    ('selective_scan', ('vimamba::selective_scan',)),
    ('matmul', ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::matmul', 'aten::linear', 'aten::baddbmm')),
    ('conv', ('convolution', 'conv1d', 'conv2d', 'cudnn_conv', 'mkldnn_conv')),
    ('norm', ('layer_norm', 'rms_norm', 'batch_norm', 'group_norm')),
    ('attention', ('scaled_dot_product', 'flash_attention', 'efficient_attention', 'softmax')),
    ('copy / layout', ('aten::copy_', 'aten::contiguous', 'aten::cat', 'aten::stack', 'aten::gather',
                       'aten::index', 'aten::clone', 'aten::flip')),
    ('elementwise', ('aten::add', 'aten::mul', 'aten::sub', 'aten::div', 'aten::silu', 'aten::gelu',
                     'aten::sigmoid', 'aten::exp', 'aten::softplus', 'aten::mean', 'aten::sum', 'aten::neg',
                     'aten::pow', 'aten::rsqrt', 'aten::where', 'aten::fill_', 'aten::zero_')),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return 'other'


def _self_time_us(event, cuda: bool) -> float:
    if cuda:
        return float(getattr(event, 'self_device_time_total', getattr(event, 'self_cuda_time_total', 0.0)))
    return float(event.self_cpu_time_total)


def profile(model_name: str, batch_size: int, img_size, device: torch.device, amp: bool, train: bool,
            warmup: int, iters: int, compile_mode: str = 'none'):
    """(rows, total_us, top, host, host_top, wall_us): per group the self time in µs summed over `iters` steps, the
    15 costliest ops, per group the host's (CPU) self time, the 15 ops costliest on the host (name, µs, calls), and
    the time of `iters` unprofiled steps."""
    model = benchmark.build_model(model_name, img_size, device)
    size = img_size or model.pretrained_cfg['input_size'][1:]
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.randn(batch_size, model.pretrained_cfg['input_size'][0], *size, device=device)
    model.train(train)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    model = benchmark.compile_model(model, compile_mode)
    warmup = benchmark.compiled_warmup(compile_mode, warmup)

    def step():
        if compile_mode == 'reduce-overhead':
            torch.compiler.cudagraph_mark_step_begin()
        if train:
            with autocast:
                out = model(x)
            benchmark.training_loss(out).backward()
        else:
            with torch.no_grad(), autocast:
                model(x)

    cuda = device.type == 'cuda'
    # on CUDA, events around each step: a step waiting on the host shows as the gaps between its kernels
    wall_us = 1e3 * sum(benchmark.time_step(step, device, warmup, iters))
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            step()
        if cuda:
            torch.cuda.synchronize()
    per_group = defaultdict(float)
    host = defaultdict(float)
    per_op = defaultdict(lambda: [0.0, 0])
    host_op = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        # Operators only (CPU-side events); on CUDA their self device time is what they launched themselves.
        if cuda and getattr(event, 'device_type', None) != torch.autograd.DeviceType.CPU:
            continue
        group = 'selective_scan' if _inside_scan(event) else group_of(event.name)
        host[group] += float(event.self_cpu_time_total)
        host_op[event.name][0] += float(event.self_cpu_time_total)
        host_op[event.name][1] += 1
        us = _self_time_us(event, cuda)
        if us <= 0:
            continue
        per_group[group] += us
        per_op[event.name][0] += us
        per_op[event.name][1] += 1
    total = sum(per_group.values())
    rows = sorted(per_group.items(), key=lambda kv: -kv[1])
    top = sorted(((n, us, c) for n, (us, c) in per_op.items()), key=lambda o: -o[1])[:15]
    host_top = sorted(((n, us, c) for n, (us, c) in host_op.items()), key=lambda o: -o[1])[:15] if cuda else []
    return rows, total, top, dict(host), host_top, wall_us


def _inside_scan(event) -> bool:
    while event is not None:
        if event.name.startswith('vimamba::selective_scan'):
            return True
        event = event.cpu_parent
    return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='vim_tiny_patch16_224')
    p.add_argument('--batch-size', type=int, default=None, help='default: 128 on CUDA, 1 on CPU')
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--device', default=None)
    p.add_argument('--amp', action='store_true', help='bf16 autocast')
    p.add_argument('--train', action='store_true', help='profile forward + backward instead of inference')
    p.add_argument('--compile', default='none', choices=benchmark.COMPILE_MODES,
                   help='torch.compile mode of the profiled model')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--out', default=None, help='folder for profile.md and profile.json')
    args = p.parse_args(argv)
    from vimamba.downstream.common import check_device
    from vimamba.registry import check_model_name
    try:
        check_model_name(args.model)
        device = check_device(args.device) if args.device else benchmark.default_device()
    except ValueError as e:
        p.error(str(e))
    for name in ('batch_size', 'img_size', 'iters'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if args.warmup < 0:
        p.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f'--out {args.out!r} is a file; give a folder')
    batch = args.batch_size or (128 if device.type == 'cuda' else 1)
    rows, total, top, host, host_top, wall_us = profile(args.model, batch, args.img_size, device, args.amp,
                                                        args.train, args.warmup, args.iters, args.compile)
    clock = 'device' if device.type == 'cuda' else 'CPU'

    def per_step(us: float) -> str:
        return f'{us / args.iters / 1e3:.3f}'

    cuda = device.type == 'cuda'
    host_total = sum(host.values())
    table = benchmark.markdown_table(
        ('group', f'{clock} ms per step', 'share') + (('host ms per step',) if cuda else ()),
        [(g, per_step(us), f'{100 * us / total:.1f}%') + ((per_step(host.get(g, 0.)),) if cuda else ())
         for g, us in rows] + [('total', per_step(total), '100%') + ((per_step(host_total),) if cuda else ())])
    ops_table = benchmark.markdown_table(
        ('operator (self time, wherever it ran)', f'{clock} ms per step', 'calls per step'),
        [(name, per_step(us), f'{count / args.iters:g}') for name, us, count in top])
    what = 'training step (forward + backward)' if args.train else 'inference'
    if args.compile != 'none':
        what += f', torch.compile mode {args.compile}'
    head = (f'{args.model}, batch {batch}, {what}, {"bf16 autocast" if args.amp else "fp32"}, on '
            f'{benchmark.environment(device).get("device", device.type)}; self {clock} time per operator '
            f'group, mean of {args.iters} steps. Unprofiled: {per_step(wall_us)} ms a step.')
    if cuda:
        head += (' Host ms: the operators\' self CPU time under the profiler (which inflates it); a wall time above '
                 'the device time means the step waits on the host.')
    text = f'{head}\n\n{table}\n\nCostliest operators:\n\n{ops_table}\n'
    if cuda:
        host_table = benchmark.markdown_table(('operator', 'host ms per step', 'calls per step'),
                                              [(n, per_step(us), f'{c / args.iters:g}') for n, us, c in host_top])
        text += f'\nCostliest on the host (self CPU time under the profiler):\n\n{host_table}\n'
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'profile.md').write_text(f'# Profile\n\n{text}\nCommand: `python {" ".join(sys.argv)}`\n')
        (out / 'profile.json').write_text(json.dumps(dict(
            model=args.model, batch=batch, train=args.train, amp=args.amp, device=str(device), iters=args.iters,
            groups_us=dict(rows), total_us=total, host_groups_us=host, wall_us=wall_us,
            top=[dict(op=n, us=u, calls=c) for n, u, c in top],
            host_top=[dict(op=n, us=u, calls=c) for n, u, c in host_top]), indent=1))
    return dict(rows), total


if __name__ == '__main__':
    main()

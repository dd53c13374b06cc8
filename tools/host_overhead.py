"""Host time of a forward (and a training step) on the GPU code path, measured without a GPU: the Triton kernels
resolve as on CUDA (the interpreter's CPU tensors) but every launch is a no-op, and a tiny input keeps PyTorch's own
CPU work small. What remains is what the host spends issuing the step: Python, operator dispatch and our ops' host
code (not Triton's launcher or the CUDA driver, which come on top on a GPU); CPU convolutions stay costly even on tiny
maps (MobileMamba, AtrousMamba). Outputs are garbage by design.

    python tools/host_overhead.py                                  # every family's small variant and DeiT-Ti
    python tools/host_overhead.py --models vim_tiny_patch16_224 --train --out docs/benchmark/host.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MODELS = ("deit_tiny_patch16_224", "vim_tiny_patch16_224", "lbvim_tiny_patch16_224",
          "shufflemamba_tiny_patch16_reg12_224", "mobilemamba_t2", "atrousmamba_tiny", "mair_light_t_x2")


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.namespace] += 1
        return func(*args, **(kwargs or {}))


def _stub_launches(counter: Counter) -> None:
    from triton.runtime.interpreter import InterpretedFunction

    def launcher(self, grid):
        def launch(*args, **kwargs):
            counter["launches"] += 1
        return launch
    InterpretedFunction.__getitem__ = launcher


def _input(model, size: int) -> torch.Tensor:
    chans = model.pretrained_cfg["input_size"][0]
    return torch.randn(2, chans, size, size)  # two: BatchNorm trains on more than one value per channel


def measure(name: str, size: int, train: bool, repeats: int) -> dict:
    import timm
    from vimamba.benchmark import build_model, time_step, training_loss

    counter = Counter()
    _stub_launches(counter)
    cpu = torch.device("cpu")
    model = build_model(name, size, cpu).train(train)
    x = _input(model, size)

    def step():
        if train:
            training_loss(model(x)).backward()
        else:
            with torch.no_grad():
                model(x)
    time_step(step, cpu, warmup=3, iters=0)
    counter.clear()
    with _Count() as dispatched:
        step()
    launches = counter["launches"]
    times = time_step(step, cpu, warmup=0, iters=repeats)
    return dict(model=name, size=size, train=train, host_ms=statistics.median(times),
                aten_ops=dispatched.ops["aten"], custom_ops=sum(n for k, n in dispatched.ops.items() if k != "aten"),
                launches=launches, timm=timm.__version__)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--size", type=int, default=32, help="input size (and img_size where a model takes one)")
    p.add_argument("--train", action="store_true", help="also a training step (forward + backward)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file for the rows")
    args = p.parse_args(argv)
    if args.size < 16 or args.repeats < 1:
        p.error(f"--size must be >= 16 and --repeats >= 1, got {args.size} and {args.repeats}")
    if os.environ.get("VIMAMBA_HOST_OVERHEAD") != "1":
        from vimamba.registry import check_model_name
        try:
            for name in args.models:
                check_model_name(name, "--models")
        except ValueError as e:
            p.error(str(e))
        # its own process: the interpreter must be on before triton is imported, and the settings must not leak
        env = dict(os.environ, TRITON_INTERPRET="1", VIMAMBA_BACKEND="triton", VIMAMBA_HOST_OVERHEAD="1")
        code = subprocess.call([sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)],
                               env=env)
        if code:
            sys.exit(code)
        if not args.out:
            return None
        with open(args.out) as f:
            return json.load(f)["rows"]
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        for train in (False, True) if args.train else (False,):
            rows.append(measure(name, args.size, train, args.repeats))
            r = rows[-1]
            print(f"{name:38s} {'train' if train else 'infer'}  {r['host_ms']:8.2f} ms  aten ops {r['aten_ops']:5d}  "
                  f"custom ops {r['custom_ops']:4d}  Triton launches {r['launches']:4d}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(threads=args.threads, torch=torch.__version__, rows=rows), f, indent=1)
    return rows


if __name__ == "__main__":
    main()

"""Training smoke check: can a model memorise one fixed batch within a step budget?

Each family's model trains on a fixed batch of random images (classifiers: random labels of `num_classes`,
cross-entropy; image-to-image models: the input upsampled to the output's size, L1) with AdamW, a linear
warm-up and the recipes' weight decay, in fp32 or under bf16 / fp16 autocast (fp16 with a GradScaler) and with a
chosen kernel backend. It passes when the loss stays below `threshold` (classifiers, absolute) or below
`threshold` times the first loss (image-to-image) for `hold` consecutive steps within `steps` (a loss that only
dips under the threshold while oscillating does not pass). A family that cannot fit 8 images cannot
learn ImageNet either, and this costs seconds of GPU time instead of days.

The warm-up is part of the check, not a convenience: without it VMamba v2 (AtrousMamba with `scan='cross'`)
oscillates for tens of steps at full lr 5e-4 from 160 px up, exactly as the official VMamba code does (same
weights, same batch: the two loss curves agree to 3 decimals), while every official recipe warms up.
"""
import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.models import get_pretrained_cfg

from vimamba.benchmark import scan_backend

from .common import create_classifier, known_model
from .config import ConfigError
from .train import build_optimizer

__all__ = ['FAMILY_MODELS', 'TEST_MODELS', 'MemorizeResult', 'memorize', 'memorize_main']

# family -> (model, input size): each family's smallest real model at the size it trains at.
FAMILY_MODELS = {
    'vim': ('vim_tiny_patch16_224', 224),
    'lbvim': ('lbvim_tiny_patch16_224', 224),
    'shufflemamba': ('shufflemamba_tiny_patch16_reg12_224', 224),
    'mobilemamba': ('mobilemamba_t2', 192),
    'mair': ('mair_light_t_x2', 64),
    'atrousmamba': ('atrousmamba_tiny', 224),
    'vmamba': ('vmamba_tiny_s2l5', 224),
}
# family -> (test-size model, input size): the same check in CI, in seconds on a CPU.
TEST_MODELS = {
    'vim': ('test_vim', 32),
    'lbvim': ('test_lbvim', 32),
    'shufflemamba': ('test_shufflemamba', 32),
    'mobilemamba': ('test_mobilemamba', 64),
    'mair': ('test_mair', 16),
    'atrousmamba': ('test_atrousmamba', 64),
    'vmamba': ('test_vmamba', 64),
}
_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


@dataclass
class MemorizeResult:
    model: str
    img_size: int
    batch_size: int
    dtype: str
    backend: str
    losses: List[float] = field(default_factory=list)
    threshold: float = 0.
    passed: bool = False
    steps_to_pass: Optional[int] = None
    seconds: float = 0.

    def line(self) -> str:
        at = '-' if self.steps_to_pass is None else str(self.steps_to_pass)
        picks = [self.losses[i] for i in sorted({0, min(10, len(self.losses) - 1), len(self.losses) - 1})]
        return (f"{'PASS' if self.passed else 'FAIL'} {self.model} {self.img_size}px b{self.batch_size} "
                f"{self.dtype} {self.backend}: loss {' / '.join(f'{v:.4f}' for v in picks)} "
                f"(threshold {self.threshold:g}, reached at step {at}) {self.seconds:.1f}s")


def memorize(
        model_name: str,
        img_size: int,
        batch_size: int = 8,
        steps: int = 60,
        warmup_steps: int = 10,
        lr: float = 5e-4,
        weight_decay: float = 0.05,
        num_classes: int = 10,
        threshold: Optional[float] = None,
        dtype: str = 'fp32',
        backend: str = 'auto',
        device: Optional[torch.device] = None,
        seed: int = 0,
        model_kwargs: Optional[Dict] = None,
        hold: int = 3,
) -> MemorizeResult:
    """Train `model_name` (drop path 0) on one fixed random batch; stops once the loss has stayed under the
    threshold for `hold` steps (`steps_to_pass` is the last of them).

    `threshold` defaults to 0.1 for classifiers (cross-entropy, ln 10 = 2.3 at chance) and 0.5 (of the first loss)
    for image-to-image models. `dtype` is 'fp32', 'bf16' or 'fp16' (autocast; fp16 with a GradScaler).
    `backend` routes every 'auto' kernel call ('auto', 'reference', 'triton', 'mamba_ssm').
    """
    if dtype not in _DTYPES:
        raise ConfigError(f'memorize: dtype={dtype!r}; accepted: {tuple(_DTYPES)}')
    for arg, value, low in (('steps', steps, 1), ('batch_size', batch_size, 1), ('warmup_steps', warmup_steps, 0),
                            ('hold', hold, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f'memorize: {arg}={value!r}; accepted: an int >= {low}')
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    amp_dtype = _DTYPES[dtype]
    torch.manual_seed(seed)
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault('drop_path_rate', 0.)
    classifier = get_pretrained_cfg(known_model(model_name)).num_classes is not None
    model = create_classifier(model_name, num_classes if classifier else None, img_size, kwargs)
    model = model.to(device).train()

    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch_size, 3, img_size, img_size, generator=g).to(device)
    if not classifier:
        x = x.sigmoid()  # image-to-image models take [0, 1] images
    if classifier:
        target = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
        loss_fn = F.cross_entropy
        threshold = 0.1 if threshold is None else threshold
    else:
        with torch.no_grad():
            out_shape = model(x[:1]).shape[1:]
        target = F.interpolate(x, size=out_shape[-2:], mode='nearest')  # learnable: upsample the input
        loss_fn = F.l1_loss
        threshold = 0.5 if threshold is None else threshold

    opt_args = SimpleNamespace(layer_decay=None, weight_decay=weight_decay, opt='adamw', opt_eps=1e-8,
                               opt_betas=None, momentum=0.9)
    optimizer = build_optimizer(model, opt_args, lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    result = MemorizeResult(model_name, img_size, batch_size, dtype, backend, threshold=threshold)
    limit = threshold
    t0 = time.perf_counter()
    with scan_backend(backend):
        for step in range(steps):
            for group in optimizer.param_groups:
                group['lr'] = lr * min(1., (step + 1) / warmup_steps) if warmup_steps else lr
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = loss_fn(model(x).float(), target)
            value = loss.item()
            result.losses.append(value)
            if step == 0 and not classifier:
                limit = threshold * value
            if not math.isfinite(value):
                break
            if len(result.losses) >= hold and max(result.losses[-hold:]) < limit:
                result.passed, result.steps_to_pass = True, step
                break
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - t0
    return result


def _csv(value: str) -> List[str]:
    return [v for v in value.split(',') if v]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description='Memorise a fixed random batch with each family (training smoke check).')
    p.add_argument('--families', type=_csv, default=list(FAMILY_MODELS), metavar='A,B',
                   help=f"families, comma-separated (default all: {','.join(FAMILY_MODELS)})")
    p.add_argument('--test-models', action='store_true', help="the test-size models instead (CI, CPU)")
    p.add_argument('--dtypes', type=_csv, default=['bf16', 'fp16'], metavar='A,B', help='fp32, bf16, fp16')
    p.add_argument('--backends', type=_csv, default=['auto'], metavar='A,B',
                   help='kernel backends, e.g. triton,reference (default auto)')
    p.add_argument('--img-size', type=int, default=None, help='input size for every family (default: its own)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--steps', type=int, default=60)
    p.add_argument('--warmup-steps', type=int, default=10)
    p.add_argument('--lr', type=float, default=5e-4)
    p.add_argument('--threshold', type=float, default=None)
    p.add_argument('--hold', type=int, default=3, help='steps in a row the loss must stay under the threshold')
    p.add_argument('--device', default=None)
    p.add_argument('--out', default='', metavar='FILE', help='write the results (with every loss) as JSON')
    return p


def memorize_main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: one line per (family, dtype, backend); returns the number of failures (the exit status)."""
    args = build_parser().parse_args(argv)
    table = TEST_MODELS if args.test_models else FAMILY_MODELS
    unknown = [f for f in args.families if f not in table]
    if unknown:
        raise ConfigError(f'--families {unknown}: unknown; accepted: {list(table)}')
    results = []
    for family in args.families:
        name, size = table[family]
        for backend in args.backends:
            for dtype in args.dtypes:
                r = memorize(name, args.img_size or size, args.batch_size, args.steps, args.warmup_steps, args.lr,
                             threshold=args.threshold, dtype=dtype, backend=backend, device=args.device,
                             hold=args.hold)
                print(r.line(), flush=True)
                results.append(r)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    failed = sum(not r.passed for r in results)
    print(f'{len(results) - failed} passed, {failed} failed')
    return failed

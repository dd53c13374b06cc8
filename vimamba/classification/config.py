"""Command-line arguments and YAML recipes.

A recipe is a YAML mapping of argument names (the argparse `dest`, underscores) to values, read with
`--config FILE` (timm's argument-file style). The file sets the defaults; every flag given on the
command line wins. Unknown keys in a recipe are an error, so a typo never silently trains the wrong run.
"""
import argparse
import os
from typing import Any, Dict, Optional, Sequence

import yaml

from timm.utils import ParseKwargs


class ConfigError(ValueError):
    """A bad argument, recipe or input; the message names the argument and what it accepts."""


def _add_data_args(p: argparse.ArgumentParser, training: bool) -> None:
    g = p.add_argument_group('data')
    g.add_argument('--data-dir', default=None, metavar='DIR',
                   help='dataset root; for folders, the ImageNet layout DIR/<split>/<class>/<image>')
    g.add_argument('--dataset', default='', metavar='NAME',
                   help="timm dataset name: '' or 'folder' for an image folder (default), 'torch/cifar10', "
                        "'hfds/...', 'wds/...'; anything timm.data.create_dataset reads")
    if training:
        g.add_argument('--train-split', default='train', metavar='NAME')
    g.add_argument('--val-split', default='validation', metavar='NAME',
                   help="validation split; for folders 'validation' also finds 'val', 'valid', 'eval'")
    g.add_argument('--dataset-download', action='store_true', default=False,
                   help='let torchvision datasets download themselves')
    g.add_argument('--class-map', default='', metavar='FILE', help='file mapping class folder names to indices')
    g.add_argument('--input-size', default=None, nargs=3, type=int, metavar='N',
                   help='C H W of the model input (default: the model pretrained_cfg)')
    g.add_argument('--img-size', type=int, default=None, metavar='N',
                   help='square image size; also passed to the model as img_size when it takes one')
    g.add_argument('--crop-pct', type=float, default=None, metavar='F', help='eval centre-crop fraction')
    g.add_argument('--mean', type=float, nargs='+', default=None, metavar='F')
    g.add_argument('--std', type=float, nargs='+', default=None, metavar='F')
    g.add_argument('--interpolation', default='', metavar='NAME', help='eval resize interpolation')
    g.add_argument('-j', '--workers', type=int, default=4, metavar='N', help='data loader workers per process')
    g.add_argument('--pin-mem', action=argparse.BooleanOptionalAction, default=None,
                   help='pin host memory (default: on with CUDA)')


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('model')
    g.add_argument('--num-classes', type=int, default=None, metavar='N',
                   help='classes (default: the number of class folders, else the model default)')
    g.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                   help='extra model constructor arguments, key=value (YAML: a mapping)')


def build_train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description='Train an image classifier with timm parts (any timm model; vimamba models registered).')
    p.add_argument('-c', '--config', default='', metavar='FILE', help='YAML recipe of argument defaults')
    p.add_argument('--model', default=None, metavar='NAME', help='timm model name, e.g. vim_tiny_patch16_224')
    _add_data_args(p, training=True)
    _add_model_args(p)

    g = p.add_argument_group('model init and fine-tuning')
    g.add_argument('--pretrained', action='store_true', default=False, help="start from the model's pretrained weights")
    g.add_argument('--initial-checkpoint', default='', metavar='FILE',
                   help='start from these weights (trainer checkpoint, official checkpoint or state dict)')
    g.add_argument('--initial-checkpoint-ema', action='store_true', default=False,
                   help='take the EMA weights of --initial-checkpoint when it holds both')
    g.add_argument('--reset-head', action='store_true', default=False,
                   help='fine-tuning: drop a checkpoint classifier whose class count differs (new head)')
    g.add_argument('--resize-pos-embed', action='store_true', default=False,
                   help='fine-tuning: resample position embeddings (and other size-bound weights) '
                        'of a checkpoint trained at another resolution or stride')
    g.add_argument('--resume', default='', metavar='FILE',
                   help='continue a run from its checkpoint (model, optimizer, EMA, scaler, epoch)')
    g.add_argument('--no-resume-opt', action='store_true', default=False, help='do not restore the optimizer')
    g.add_argument('--drop', type=float, default=None, metavar='P', help='dropout rate (model default if unset)')
    g.add_argument('--drop-path', type=float, default=None, metavar='P', help='stochastic depth rate')
    g.add_argument('--grad-checkpointing', action='store_true', default=False)
    g.add_argument('--torchcompile', nargs='?', const='inductor', default=None, metavar='BACKEND')

    g = p.add_argument_group('optimizer')
    g.add_argument('--opt', default='adamw', metavar='NAME', help='timm optimizer name')
    g.add_argument('--opt-eps', type=float, default=1e-8, metavar='EPS')
    g.add_argument('--opt-betas', type=float, nargs='+', default=None, metavar='B')
    g.add_argument('--momentum', type=float, default=0.9, metavar='M')
    g.add_argument('--weight-decay', type=float, default=0.05, metavar='WD')
    g.add_argument('--layer-decay', type=float, default=None, metavar='F',
                   help="layer-wise lr decay over the model's group_matcher layers")
    g.add_argument('--clip-grad', type=float, default=None, metavar='NORM')
    g.add_argument('--clip-mode', default='norm', choices=('norm', 'value', 'agc'))
    g.add_argument('--lr', type=float, default=None, metavar='LR',
                   help='absolute learning rate; unset: lr-base * global batch / lr-base-size')
    g.add_argument('--lr-base', type=float, default=5e-4, metavar='LR', help='lr at global batch lr-base-size')
    g.add_argument('--lr-base-size', type=int, default=512, metavar='N')

    g = p.add_argument_group('schedule')
    g.add_argument('--epochs', type=int, default=300, metavar='N')
    g.add_argument('--stop-epoch', type=int, default=None, metavar='N',
                   help='stop after N epochs while keeping the schedule of --epochs (jobs cut in pieces)')
    g.add_argument('--sched', default='cosine', metavar='NAME')
    g.add_argument('--sched-on-updates', action='store_true', default=False,
                   help='step the schedule every update instead of every epoch')
    g.add_argument('--warmup-epochs', type=int, default=5, metavar='N')
    g.add_argument('--warmup-lr', type=float, default=1e-6, metavar='LR')
    g.add_argument('--warmup-prefix', action='store_true', default=False,
                   help='the decay starts after the warmup (total stays --epochs) instead of counting it')
    g.add_argument('--min-lr', type=float, default=1e-5, metavar='LR')
    g.add_argument('--cooldown-epochs', type=int, default=0, metavar='N')
    g.add_argument('--decay-epochs', type=float, default=90, metavar='N')
    g.add_argument('--decay-rate', type=float, default=0.1, metavar='F')

    g = p.add_argument_group('augmentation and regularisation')
    g.add_argument('--no-aug', action='store_true', default=False)
    g.add_argument('--scale', type=float, nargs=2, default=(0.08, 1.0), metavar='F')
    g.add_argument('--ratio', type=float, nargs=2, default=(3. / 4., 4. / 3.), metavar='F')
    g.add_argument('--hflip', type=float, default=0.5)
    g.add_argument('--color-jitter', type=float, default=0.4)
    g.add_argument('--aa', default=None, metavar='POLICY',
                   help="timm auto-augment policy: 'rand-m9-mstd0.5-inc1' (RandAugment), '3a' (ThreeAugment)")
    g.add_argument('--aug-repeats', type=int, default=0, metavar='N',
                   help='repeated augmentation (needs several processes)')
    g.add_argument('--reprob', type=float, default=0., help='random erasing probability')
    g.add_argument('--remode', default='pixel')
    g.add_argument('--recount', type=int, default=1)
    g.add_argument('--train-interpolation', default='bicubic', help="'random', 'bilinear', 'bicubic'")
    g.add_argument('--mixup', type=float, default=0.)
    g.add_argument('--cutmix', type=float, default=0.)
    g.add_argument('--mixup-prob', type=float, default=1.)
    g.add_argument('--mixup-switch-prob', type=float, default=0.5)
    g.add_argument('--mixup-mode', default='batch')
    g.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')

    g = p.add_argument_group('model EMA')
    g.add_argument('--model-ema', action='store_true', default=False)
    g.add_argument('--model-ema-decay', type=float, default=0.9998)
    g.add_argument('--model-ema-warmup', action='store_true', default=False)
    g.add_argument('--model-ema-force-cpu', action='store_true', default=False)

    g = p.add_argument_group('knowledge distillation')
    g.add_argument('--kd-model', default='', metavar='NAME', help='teacher timm model name')
    g.add_argument('--kd-checkpoint', default='', metavar='FILE', help='teacher weights (else its pretrained ones)')
    g.add_argument('--kd-lambda', type=float, default=1.0, metavar='F', help='weight of the distillation term')
    g.add_argument('--kd-tau', type=float, default=1.0, metavar='T', help='softmax temperature')
    g.add_argument('--kd-img-size', type=int, default=None, metavar='N',
                   help='teacher input size (default: its pretrained_cfg)')

    g = p.add_argument_group('run')
    g.add_argument('-b', '--batch-size', type=int, default=128, metavar='N', help='batch per process')
    g.add_argument('-vb', '--validation-batch-size', type=int, default=None, metavar='N')
    g.add_argument('--amp', action=argparse.BooleanOptionalAction, default=False,
                   help='autocast in --amp-dtype (off: full fp32)')
    g.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    g.add_argument('--device', default=None, metavar='DEV', help='default: cuda when available, else cpu')
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--output', default='', metavar='DIR', help='run folder (default output/<model>-<time>)')
    g.add_argument('--checkpoint-hist', type=int, default=3, metavar='N', help='best checkpoints kept')
    g.add_argument('--eval-metric', default='top1', choices=('top1', 'top5', 'loss'))
    g.add_argument('--checkpoint-metric-ema', action='store_true', default=False,
                   help='rank checkpoints by the EMA weights (the published number is the EMA one)')
    g.add_argument('--eval-interval', type=int, default=1, metavar='N', help='evaluate every N epochs (and the last)')
    g.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                   help='progress bars (default: when stderr is a terminal)')
    g.add_argument('--log-interval', type=int, default=50, metavar='N',
                   help='log loss, lr and speed every N updates when there is no progress bar')
    return p


def build_validate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description='Top-1/top-5 and images/s of a classifier on a validation split.')
    p.add_argument('model', metavar='MODEL', help='timm model name')
    _add_data_args(p, training=False)
    p.set_defaults(val_split='validation')
    _add_model_args(p)
    p.add_argument('--data', dest='data_dir', default=None, metavar='DIR', help='alias of --data-dir')
    p.add_argument('--checkpoint', default='', metavar='FILE',
                   help='weights: trainer checkpoint, official checkpoint (through the model checkpoint_filter_fn) '
                        'or state dict; none: the pretrained weights when --pretrained, else an error')
    p.add_argument('--pretrained', action='store_true', default=False)
    p.add_argument('--use-ema', action='store_true', default=False, help='EMA weights of a trainer checkpoint')
    p.add_argument('-b', '--batch-size', type=int, default=128, metavar='N')
    p.add_argument('--amp', action=argparse.BooleanOptionalAction, default=False)
    p.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    p.add_argument('--device', default=None, metavar='DEV')
    p.add_argument('--results-file', default='', metavar='FILE', help='JSON result (default: printed only)')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None)
    return p


def load_recipe(path: str, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """Read a YAML recipe and check each key is an argument of `parser`."""
    if not os.path.isfile(path):
        raise ConfigError(f'--config {path!r}: no such file')
    with open(path) as f:
        try:
            cfg = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f'--config {path!r}: not valid YAML: {e}') from e
    if not isinstance(cfg, dict):
        raise ConfigError(f'--config {path!r}: expected a mapping of argument names to values, got {type(cfg).__name__}')
    known = {a.dest for a in parser._actions}
    unknown = sorted(k for k in cfg if k.replace('-', '_') not in known)
    if unknown:
        raise ConfigError(
            f'--config {path!r}: unknown keys {unknown}; keys are argument names with underscores, '
            f'e.g. weight_decay, drop_path (see --help)')
    return {k.replace('-', '_'): v for k, v in cfg.items()}


def parse_train_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Flags over the recipe over the parser defaults."""
    parser = build_train_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('-c', '--config', default='')
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_recipe(known.config, parser))
    args = parser.parse_args(argv)
    _normalise(args)
    return args


def parse_validate_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = build_validate_parser().parse_args(argv)
    _normalise(args)
    return args


def _normalise(args: argparse.Namespace) -> None:
    # YAML gives lists where argparse gives tuples; keep one type so saved args compare equal
    for key in ('input_size', 'mean', 'std', 'scale', 'ratio', 'opt_betas'):
        v = getattr(args, key, None)
        if v is not None:
            setattr(args, key, tuple(v))
    if args.model_kwargs is None:
        args.model_kwargs = {}
    if not isinstance(args.model_kwargs, dict):
        raise ConfigError(f'model_kwargs: expected a mapping, got {args.model_kwargs!r}')


def args_to_yaml(args: argparse.Namespace) -> str:
    """The resolved arguments as a recipe: feeding it back with --config repeats the run."""
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items()) if k != 'config'}
    return yaml.safe_dump(d, sort_keys=True)

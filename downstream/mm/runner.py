"""Training and testing any mmengine config with the Runner: what `tools/train.py` and `tools/test.py` run.

A config brings its own modules with `custom_imports`; nothing task-specific is imported. Distributed runs follow
OpenMMLab (`--launcher pytorch` / `slurm`); without CUDA the group is gloo and SyncBN becomes BN.
"""
import argparse
import json
import logging
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, Runner

from vimamba.checkpoint import read_checkpoint

__all__ = ['train_main', 'test_main', 'load_config', 'build_runner', 'check_checkpoint_fits']


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics '
                                           '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, key=value (e.g. train_dataloader.batch_size=4 '
                             'model.backbone.with_cp=True param_scheduler.1.end=1000: list items by index)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help="'pytorch' under torchrun, 'slurm' under srun, 'none' for one process")
    # torch.distributed.launch passes --local-rank (torchrun sets LOCAL_RANK instead)
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train with an mmengine config (mmseg, mmdet, restoration, '
                                                 'change detection).')
    parser.add_argument('config', help='config file')
    _add_common(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume training: from CHECKPOINT, or (no value) from the latest checkpoint '
                             'in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper, '
                                                           'dynamic loss scale)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the lr by (processes x batch size) / the config's auto_scale_lr.base_batch_size")
    return parser


def build_test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint with an mmengine config; writes the '
                                                 'metrics as JSON.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (mmengine .pth) to evaluate')
    _add_common(parser)
    parser.add_argument('--out', help='metrics JSON file (default: <work dir>/metrics.json)')
    return parser


def _replace_sync_bn(node: Any) -> int:
    """Turn every `type='SyncBN'` in a config subtree into 'BN'; returns how many were changed."""
    changed = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            changed += 1
        for value in node.values():
            changed += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += _replace_sync_bn(value)
    return changed


def load_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied (cfg-options, work dir, launcher)."""
    if not osp.isfile(args.config) or not args.config.endswith('.py'):
        raise ValueError(f'config {args.config!r} is not a .py config file')
    try:
        cfg = Config.fromfile(args.config)
    except Exception as e:  # noqa: BLE001  syntax errors, missing bases or packages: the message says which
        raise ValueError(f'config {args.config!r} does not load: {type(e).__name__}: {e}') from e
    if args.cfg_options:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f'--cfg-options: {e}') from e
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.launcher != 'none' and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    return cfg


def _setup_cpu_distributed(cfg: Config) -> None:
    """gloo process group, DDP over CPU modules, BN for SyncBN (which needs GPU tensors)."""
    import torch.distributed as dist
    if cfg.launcher != 'pytorch':
        raise RuntimeError(f'--launcher {cfg.launcher}: without CUDA only torchrun (--launcher pytorch) is supported')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    wrapper.setdefault('broadcast_buffers', False)  # as mmengine's default GPU wrapper
    wrapper['device_ids'] = None  # CPU modules
    cfg.model_wrapper_cfg = wrapper
    if 'model' in cfg and _replace_sync_bn(cfg.model):
        print_log('no CUDA: SyncBN runs as BN in each CPU process', logger='current', level=logging.WARNING)


def _enable_amp(cfg: Config) -> None:
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('--amp: the config already uses AmpOptimWrapper', logger='current', level=logging.WARNING)
        return
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(f"--amp: needs optim_wrapper.type='OptimWrapper', the config has {wrapper.type!r}")
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')


def _check_data_roots(cfg: Config, loaders: Sequence[str]) -> None:
    """Every local `data_root` of the datasets the run reads exists (a wrong path stops here, not mid-run)."""
    def roots(node, where):
        if isinstance(node, dict):
            root = node.get('data_root')
            if isinstance(root, str) and root and '://' not in root:
                yield where + '.data_root', root
            for key in ('dataset', 'datasets'):
                if key in node:
                    yield from roots(node[key], f'{where}.{key}')
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                yield from roots(item, f'{where}.{i}')

    for loader in loaders:
        for where, root in roots((cfg.get(loader) or {}).get('dataset'), f'{loader}.dataset'):
            if not osp.isdir(root):
                raise ValueError(f'{where} {root!r} is not a folder (the config header gives the layout; '
                                 f'another place: --cfg-options {where}=PATH)')


def _check_file(path: Optional[str], arg: str) -> None:
    if path and '://' not in path and not osp.isfile(osp.expanduser(path)):
        raise ValueError(f'{arg} {path!r} is not a file')


def build_runner(cfg: Config) -> Runner:
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


class _KeepMetrics(Hook):
    """Remembers the metrics of the last validation."""
    priority = 'LOWEST'

    def __init__(self):
        self.metrics: Optional[Dict[str, Any]] = None

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, Any]] = None) -> None:
        self.metrics = metrics


def _jsonable(metrics: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
            value = value.item()
        elif hasattr(value, 'tolist'):
            value = value.tolist()
        out[key] = value
    return out


def _load_local_checkpoint(filename: str, map_location=None) -> Any:
    """mmengine's local-file loader via vimamba's reader (no pickled code runs); `--resume` keeps the logged history."""
    checkpoint = read_checkpoint(osp.expanduser(filename), 'checkpoint')
    hub = checkpoint.get('message_hub') if isinstance(checkpoint, dict) else None
    scalars = hub.get('log_scalars', {}) if isinstance(hub, dict) else {}
    for key, buffer in list(scalars.items()):
        state = getattr(buffer, '__dict__', {})
        if '_log_history' in state:
            scalars[key] = HistoryBuffer(state['_log_history'], state['_count_history'], state['max_length'])
    return checkpoint


def _read_local_checkpoints() -> None:
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)


def _build_checked(parser: argparse.ArgumentParser, cfg: Config) -> Runner:
    """The runner; a config that cannot build (an unknown model name, a bad argument) stops with one line."""
    try:
        return build_runner(cfg)
    except (ValueError, KeyError, FileNotFoundError) as e:
        parser.exit(1, f'{parser.prog}: error: the config does not build: {e.args[0] if e.args else e}\n')


def _write_metrics(runner: Runner, out: str, **content: Any) -> None:
    if runner.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(content, f, indent=2)


def train_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """`tools/train.py`: train and validate; returns the last validation metrics (also `<work dir>/metrics.json`)."""
    parser = build_train_parser()
    args = parser.parse_args(argv)
    _read_local_checkpoints()
    try:
        if args.resume != 'auto':
            _check_file(args.resume, '--resume')
        cfg = load_config(args)
        if args.amp:
            _enable_amp(cfg)
        if args.auto_scale_lr:
            if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
                raise ValueError('--auto-scale-lr: the config has no auto_scale_lr.base_batch_size')
            cfg.auto_scale_lr.enable = True
        _check_file(cfg.get('load_from'), 'load_from')
        _check_data_roots(cfg, ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else []))
    except ValueError as e:
        parser.error(str(e))
    if args.resume == 'auto':
        cfg.resume = True
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    runner = _build_checked(parser, cfg)
    keep = _KeepMetrics()
    runner.register_hook(keep)
    runner.train()
    metrics = _jsonable(keep.metrics)
    if metrics:
        out = osp.join(runner.work_dir, 'metrics.json')
        _write_metrics(runner, out, config=args.config, metrics=metrics)
        print_log(f'final validation metrics: {json.dumps(metrics)} -> {out}', logger='current')
    return metrics


def check_checkpoint_fits(model: torch.nn.Module, checkpoint: Dict[str, Any], path: str) -> None:
    """Load `checkpoint` into `model` (its load hooks apply); `KeyError` listing mismatched keys if it does not fit."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}  # mmengine's default revise_keys
    shapes: List[str] = []
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # torch reports shape mismatches only this way: load the rest for the key lists
        shapes = [line.strip() for line in str(e).splitlines() if 'size mismatch for ' in line]
        if not shapes:
            raise
        bad = {re.match(r'size mismatch for (\S+):', line).group(1) for line in shapes}
        result = model.load_state_dict({k: v for k, v in state.items() if k not in bad}, strict=False)
        result.missing_keys[:] = [k for k in result.missing_keys if k not in bad]
    missing, unexpected = result.missing_keys, result.unexpected_keys
    parts = [f'{what} ({len(keys)}): {", ".join(keys[:8])}{", ..." if len(keys) > 8 else ""}'
             for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                                ('shape mismatches', shapes)) if keys]
    if parts:
        raise KeyError(f'checkpoint {path!r} does not fit the config\'s {type(model).__name__}: {"; ".join(parts)}')


def test_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """`tools/test.py`: evaluate a checkpoint on the config's test set; writes and returns the metrics."""
    parser = build_test_parser()
    args = parser.parse_args(argv)
    _read_local_checkpoints()
    try:
        _check_file(args.checkpoint, 'checkpoint')
        if args.out and osp.isdir(args.out):
            raise ValueError(f'--out {args.out!r} is a folder; give a .json file name')
        cfg = load_config(args)
        _check_data_roots(cfg, ['test_dataloader'])
    except ValueError as e:
        parser.error(str(e))
    cfg.load_from = args.checkpoint
    runner = _build_checked(parser, cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    try:
        check_checkpoint_fits(model, CheckpointLoader.load_checkpoint(args.checkpoint, map_location='cpu'),
                              args.checkpoint)
    except KeyError as e:
        parser.exit(1, f'{parser.prog}: error: {e.args[0]}\n')
    metrics = _jsonable(runner.test())
    out = args.out or osp.join(runner.work_dir, 'metrics.json')
    _write_metrics(runner, out, config=args.config, checkpoint=args.checkpoint, metrics=metrics)
    if runner.rank == 0:
        print_log(f'test metrics: {json.dumps(metrics)} -> {out}', logger='current')
    return metrics

"""Evaluation: exact top-1/top-5 over a (possibly sharded) loader, and the validate_cls entry point."""
import json
import logging
import os
import time
from typing import Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import load_file, load_weights
from .common import (autocast, create_classifier, data_config_for, init_distributed, progress, setup_logging,
                     use_progress)
from .config import ConfigError, parse_validate_args
from .data import build_dataset, build_eval_loader, check_data_dir, dataset_num_classes

_logger = logging.getLogger('vimamba.classification')


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, amp: bool = False, amp_dtype: str = 'bfloat16',
             show_progress: bool = False) -> Dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 (percent) and images/s. Counts are summed over processes, so
    with the no-padding shard sampler the numbers equal a single-process run over the same images."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits, images
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for images, targets in progress(loader, show_progress, desc='eval'):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast(device, amp, amp_dtype):
            logits = model(images)
        logits = logits.float()
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        hits = top.eq(targets[:, None])
        totals[0] += F.cross_entropy(logits, targets, reduction='sum').double()
        totals[1] += hits[:, 0].sum()
        totals[2] += hits.any(dim=-1).sum()
        totals[3] += targets.numel()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    loss, top1, top5, n = totals.tolist()
    if n == 0:
        raise ConfigError('evaluation saw no images (empty validation split)')
    return {'loss': loss / n, 'top1': 100. * top1 / n, 'top5': 100. * top5 / n, 'images': int(n),
            'images_per_s': n / max(elapsed, 1e-9)}


def _saved_args(path: str) -> Optional[object]:
    """The training arguments stored in one of our checkpoints (None for other checkpoints)."""
    if not path:
        return None
    ckpt = load_file(path, '--checkpoint')
    return ckpt.get('args') if isinstance(ckpt, dict) else None


def validate(args) -> Dict[str, object]:
    """Evaluate MODEL on the validation split with the eval transform of its pretrained_cfg."""
    setup_logging()
    device, rank, world_size, _ = init_distributed(args.device)
    check_data_dir(args.data_dir, args.dataset)
    saved = _saved_args(args.checkpoint)
    if saved is not None and getattr(saved, 'model', args.model) == args.model:
        # a checkpoint of our trainer: default to the run's head, size, model arguments and eval transform
        for key in ('num_classes', 'img_size', 'input_size', 'crop_pct', 'mean', 'std', 'interpolation'):
            if getattr(args, key, None) in (None, '') and getattr(saved, key, None) not in (None, ''):
                setattr(args, key, getattr(saved, key))
        if not args.model_kwargs and getattr(saved, 'model_kwargs', None):
            args.model_kwargs = dict(saved.model_kwargs)
    if not args.checkpoint and not args.pretrained:
        raise ConfigError('give weights: --checkpoint FILE, or --pretrained for the model pretrained weights')

    dataset = build_dataset(args, args.val_split, '--val-split', training=False)
    model = create_classifier(args.model, args.num_classes, args.img_size, args.model_kwargs, arg='model',
                              pretrained=args.pretrained or None)
    if args.checkpoint:
        load_weights(model, args.checkpoint, '--checkpoint', use_ema=args.use_ema,
                     head_hint='give the --num-classes the checkpoint was trained with',
                     size_hint='give the --img-size (and --model-kwargs) the checkpoint was trained with')
    ds_classes = dataset_num_classes(dataset)
    if ds_classes is not None and ds_classes > model.num_classes:
        raise ConfigError(f'--data-dir {args.data_dir!r}: {ds_classes} classes but the model has '
                          f'{model.num_classes} outputs (--num-classes)')
    model.to(device)
    data_config = data_config_for(args, model)
    loader = build_eval_loader(dataset, data_config, args.batch_size, args.workers, rank, world_size,
                               pin_memory=bool(args.pin_mem) if args.pin_mem is not None else device.type == 'cuda')
    metrics = evaluate(model, loader, device, args.amp, args.amp_dtype, use_progress(args.progress, rank))
    result = {
        'model': args.model, 'checkpoint': args.checkpoint or None, 'ema': bool(args.use_ema),
        'top1': round(metrics['top1'], 4), 'top5': round(metrics['top5'], 4), 'loss': round(metrics['loss'], 6),
        'images': metrics['images'], 'images_per_s': round(metrics['images_per_s'], 2),
        'param_count': round(sum(p.numel() for p in model.parameters()) / 1e6, 4),
        'input_size': list(data_config['input_size']), 'crop_pct': data_config['crop_pct'],
        'interpolation': data_config['interpolation'], 'world_size': world_size,
        'device': str(device), 'amp': args.amp_dtype if args.amp else 'float32',
    }
    if rank == 0:
        _logger.info('%s: top-1 %.3f top-5 %.3f (%d images, %.1f img/s)', args.model, result['top1'],
                     result['top5'], result['images'], result['images_per_s'])
        if args.results_file:
            os.makedirs(os.path.dirname(os.path.abspath(args.results_file)), exist_ok=True)
            with open(args.results_file, 'w') as f:
                json.dump(result, f, indent=2)
    return result


def validate_main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_validate_args(argv)
    result = validate(args)
    print(json.dumps(result, indent=2))
    return result

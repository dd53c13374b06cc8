"""Training: timm's data, optimizer, scheduler, EMA and checkpoint parts in one loop.

One process or many (`torchrun`, DDP: nccl on CUDA, gloo on CPU). Each epoch reseeds every RNG from
(seed, epoch, rank), so a run resumed from an epoch checkpoint repeats the run that went straight through.
The run folder gets `args.yaml` (the resolved recipe), `log.jsonl` (one JSON object per epoch),
`last.pth.tar` plus the best checkpoints, and `curves.png` at the end.
"""
import argparse
import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.optim._param_groups import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.utils import CheckpointSaver, ModelEmaV3, NativeScaler, dispatch_clip_grad, random_seed

from .checkpoint import load_file, load_weights, unwrap_state_dict
from .common import (autocast, create_classifier, data_config_for, init_distributed, known_model, progress,
                     setup_logging, use_progress)
from .config import ConfigError, args_to_yaml, parse_train_args
from .data import build_dataset, build_eval_loader, build_train_loader, check_data_dir, dataset_num_classes
from .evaluate import evaluate

_logger = logging.getLogger('vimamba.classification')


# ----------------------------------------------------------------------------------------------------
# optimizer

def build_optimizer(model: nn.Module, args, lr: float) -> torch.optim.Optimizer:
    """AdamW (or any timm optimizer) over weight-decay groups, layer-decayed through the model's
    `group_matcher` when `layer_decay` is set. No decay on what the model's `no_weight_decay()` names (position
    embeddings, cls/register tokens, A_log, D) and, by timm's grouping, on 1-D parameters (norms, biases)."""
    no_decay = sorted(model.no_weight_decay()) if hasattr(model, 'no_weight_decay') else []
    if args.layer_decay is not None:
        groups = param_groups_layer_decay(model, weight_decay=args.weight_decay, no_weight_decay_list=no_decay,
                                          layer_decay=args.layer_decay)
    else:
        groups = param_groups_weight_decay(model, weight_decay=args.weight_decay, no_weight_decay_list=no_decay)
    kwargs: Dict[str, Any] = {}
    if args.opt_eps is not None:
        kwargs['eps'] = args.opt_eps
    if args.opt_betas is not None:
        kwargs['betas'] = tuple(args.opt_betas)
    return create_optimizer_v2(groups, opt=args.opt, lr=lr, weight_decay=0., momentum=args.momentum, **kwargs)


def resolve_lr(args, world_size: int) -> float:
    """Absolute --lr, else lr-base scaled by global batch / lr-base-size (the official codes' rule)."""
    if args.lr is not None:
        return args.lr
    return args.lr_base * args.batch_size * world_size / args.lr_base_size


def build_scheduler(optimizer, args, updates_per_epoch: int):
    """timm's scheduler (warmup + cosine by default); returns it and the number of epochs to run.

    With `warmup_prefix` the decay covers the epochs after the warmup and the total stays `epochs`
    (Swin/VMamba's convention); timm alone would append the warmup to `epochs`."""
    decay_epochs = args.epochs - args.warmup_epochs if args.warmup_prefix else args.epochs
    if decay_epochs <= 0:
        raise ConfigError(f'--warmup-epochs {args.warmup_epochs} leaves no epoch to decay in --epochs {args.epochs}')
    return create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=decay_epochs, decay_epochs=args.decay_epochs,
        cooldown_epochs=args.cooldown_epochs, decay_rate=args.decay_rate, min_lr=args.min_lr,
        warmup_lr=args.warmup_lr, warmup_epochs=args.warmup_epochs, warmup_prefix=args.warmup_prefix,
        step_on_epochs=not args.sched_on_updates, updates_per_epoch=updates_per_epoch)


# ----------------------------------------------------------------------------------------------------
# distillation

class DistillationLoss(nn.Module):
    """Soft knowledge distillation: lambda * tau^2 * KL(teacher || student) over temperature-softened
    class distributions, batch-averaged. The teacher sees the same (mixed) images, re-normalised to its
    own mean/std and resized to its input size."""

    def __init__(self, teacher: nn.Module, tau: float, lam: float, size: int, mean_s, std_s, mean_t, std_t):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.tau, self.lam, self.size = tau, lam, size
        scale = torch.tensor(std_s) / torch.tensor(std_t)
        shift = (torch.tensor(mean_s) - torch.tensor(mean_t)) / torch.tensor(std_t)
        self.register_buffer('scale', scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer('shift', shift.view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher's BatchNorm statistics never move
        return self

    def forward(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = images * self.scale.to(images.dtype) + self.shift.to(images.dtype)
            if x.shape[-1] != self.size or x.shape[-2] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode='bicubic', align_corners=False, antialias=True)
            teacher_logits = self.teacher(x).float()
        s = F.log_softmax(student_logits.float() / self.tau, dim=-1)
        t = F.log_softmax(teacher_logits / self.tau, dim=-1)
        return self.lam * self.tau ** 2 * F.kl_div(s, t, reduction='batchmean', log_target=True)


def build_distillation(args, data_config, num_classes: int, device) -> Optional[DistillationLoss]:
    if not args.kd_model:
        return None
    known_model(args.kd_model, '--kd-model')
    teacher = create_classifier(args.kd_model, num_classes, args.kd_img_size, {}, arg='--kd-model',
                                pretrained=(not args.kd_checkpoint) or None)
    if args.kd_checkpoint:
        load_weights(teacher, args.kd_checkpoint, '--kd-checkpoint', prefer_ema=True)
    cfg = teacher.pretrained_cfg
    size = args.kd_img_size or cfg.get('input_size', (3, 224, 224))[-1]
    return DistillationLoss(teacher, args.kd_tau, args.kd_lambda, size, data_config['mean'], data_config['std'],
                            cfg.get('mean', data_config['mean']), cfg.get('std', data_config['std'])).to(device)


# ----------------------------------------------------------------------------------------------------
# loop

def _is_primary() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _reduce_sum(values: List[float], device) -> List[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def train_one_epoch(model, raw_model, loader, optimizer, loss_fn, device, args, scheduler, num_updates: int,
                    model_ema=None, mixup_fn=None, scaler=None, kd=None, show_progress=False):
    model.train()
    if kd is not None:
        kd.train()
    loss_sum, seen = 0., 0
    start = time.perf_counter()
    for step, (images, targets) in enumerate(progress(loader, show_progress, desc='train')):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup_fn is not None:
            images, targets = mixup_fn(images, targets)
        with autocast(device, args.amp, args.amp_dtype):
            logits = model(images)
            loss = loss_fn(logits, targets)
            if kd is not None:
                loss = loss + kd(logits, images)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise RuntimeError(f'loss is {loss_value} at update {num_updates}; stopping (try --clip-grad or a lower lr)')
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler(loss, optimizer, clip_grad=args.clip_grad, clip_mode=args.clip_mode,
                   parameters=raw_model.parameters())
        else:
            loss.backward()
            if args.clip_grad is not None:
                dispatch_clip_grad(raw_model.parameters(), value=args.clip_grad, mode=args.clip_mode)
            optimizer.step()
        num_updates += 1
        if model_ema is not None:
            model_ema.update(raw_model, step=num_updates)
        scheduler.step_update(num_updates=num_updates)
        loss_sum += loss_value * images.shape[0]
        seen += images.shape[0]
        if args.log_interval and (step + 1) % args.log_interval == 0 and not show_progress and _is_primary():
            _logger.info('  update %d (%d/%d): loss %.4f lr %.3g, %.0f img/s/process', num_updates, step + 1,
                         len(loader), loss_value, optimizer.param_groups[0]['lr'],
                         seen / (time.perf_counter() - start))
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    loss_sum, seen = _reduce_sum([loss_sum, seen], device)
    lrs = [g['lr'] for g in optimizer.param_groups]
    return {'train_loss': loss_sum / max(seen, 1), 'lr': max(lrs), 'train_images_per_s': seen / elapsed,
            'epoch_time_s': elapsed}, num_updates


def _saved_args(args, **resolved) -> argparse.Namespace:
    """A plain copy of the arguments for the checkpoint (only types torch's safe unpickler accepts)."""
    d = {}
    for k, v in vars(args).items():
        if isinstance(v, tuple):
            v = list(v)
        d[k] = v
    d.update(resolved)
    return argparse.Namespace(**d)


def train(args) -> Dict[str, Any]:
    """Run the training that `args` describes; returns the run folder, the epoch log and the best metric."""
    device, rank, world_size, _ = init_distributed(args.device)
    setup_logging(rank)
    distributed = world_size > 1
    check_data_dir(args.data_dir, args.dataset)
    known_model(args.model)
    if args.pin_mem is None:
        args.pin_mem = device.type == 'cuda'
    show_progress = use_progress(args.progress, rank)

    train_ds = build_dataset(args, args.train_split, '--train-split', training=True)
    val_ds = build_dataset(args, args.val_split, '--val-split', training=False)
    ds_classes = dataset_num_classes(train_ds)
    if args.num_classes is None and ds_classes is not None:
        args.num_classes = ds_classes

    # same seed on every rank: identical initial weights, so the EMA copies agree before DDP broadcasts
    random_seed(args.seed, 0)
    model = create_classifier(args.model, args.num_classes, args.img_size, args.model_kwargs,
                              pretrained=args.pretrained or None, drop_rate=args.drop, drop_path_rate=args.drop_path)
    args.num_classes = model.num_classes
    if ds_classes is not None and ds_classes > model.num_classes:
        raise ConfigError(f'--num-classes {model.num_classes}: the {args.train_split!r} split has {ds_classes} classes')
    if args.initial_checkpoint:
        load_weights(model, args.initial_checkpoint, '--initial-checkpoint', use_ema=args.initial_checkpoint_ema,
                     reset_head=args.reset_head, resize=args.resize_pos_embed)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)
    data_config = data_config_for(args, model)
    if args.aug_repeats and not distributed:
        _logger.info('repeated augmentation needs several processes: off for this single-process run')

    lr = resolve_lr(args, world_size)
    optimizer = build_optimizer(model, args, lr)
    scaler = NativeScaler(device=device.type) if args.amp and args.amp_dtype == 'float16' else None
    model_ema = None
    if args.model_ema:
        model_ema = ModelEmaV3(model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup,
                               device='cpu' if args.model_ema_force_cpu else None)

    start_epoch, resume_state = 0, None
    if args.resume:
        resume_state = load_file(args.resume, '--resume')
        if not isinstance(resume_state, dict) or 'epoch' not in resume_state or 'state_dict' not in resume_state:
            raise ConfigError(f'--resume {args.resume!r}: not a checkpoint of this trainer (no epoch / state_dict); '
                              f'use --initial-checkpoint to start from weights')
        model.load_state_dict(unwrap_state_dict(resume_state, False, '--resume'))
        if not args.no_resume_opt and 'optimizer' in resume_state:
            optimizer.load_state_dict(resume_state['optimizer'])
        if scaler is not None and scaler.state_dict_key in resume_state:
            scaler.load_state_dict(resume_state[scaler.state_dict_key])
        if model_ema is not None:
            if 'state_dict_ema' not in resume_state:
                raise ConfigError(f'--resume {args.resume!r} holds no EMA weights but --model-ema is on')
            model_ema.module.load_state_dict(unwrap_state_dict(resume_state, True, '--resume'))
        start_epoch = resume_state['epoch'] + 1

    raw_model = model
    if args.torchcompile:
        model = torch.compile(model, backend=args.torchcompile)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    train_loader = build_train_loader(args, train_ds, data_config, args.mixup > 0 or args.cutmix > 0, distributed,
                                      device)
    eval_loader = build_eval_loader(val_ds, data_config, args.validation_batch_size or args.batch_size,
                                    args.workers, rank, world_size, pin_memory=args.pin_mem)

    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                         switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                         label_smoothing=args.smoothing, num_classes=args.num_classes)
        loss_fn = SoftTargetCrossEntropy()
    elif args.smoothing:
        loss_fn = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()
    kd = build_distillation(args, data_config, args.num_classes, device)

    updates_per_epoch = len(train_loader)
    scheduler, num_epochs = build_scheduler(optimizer, args, updates_per_epoch)
    num_updates = start_epoch * updates_per_epoch
    if start_epoch > 0:
        if args.sched_on_updates:
            scheduler.step_update(num_updates)
        else:
            scheduler.step(start_epoch)
    end_epoch = num_epochs if args.stop_epoch is None else min(num_epochs, args.stop_epoch)

    output = args.output or os.path.join('output', 'cls', f'{args.model}-{time.strftime("%Y%m%d-%H%M%S")}')
    args.output = output
    saver = None
    if rank == 0:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, 'args.yaml'), 'w') as f:
            f.write(args_to_yaml(args))
        saver = CheckpointSaver(
            model=raw_model, optimizer=optimizer, args=_saved_args(args, lr_resolved=lr), model_ema=model_ema,
            amp_scaler=scaler, checkpoint_dir=output, recovery_dir=output, decreasing=args.eval_metric == 'loss',
            max_history=args.checkpoint_hist)
        if resume_state is not None and 'saver' in resume_state \
                and os.path.abspath(os.path.dirname(args.resume)) == os.path.abspath(output):
            saver.load_state_dict(resume_state['saver'])
    log_path = os.path.join(output, 'log.jsonl')
    if rank == 0 and start_epoch == 0 and os.path.exists(log_path):
        os.remove(log_path)
    params = sum(p.numel() for p in raw_model.parameters())
    _logger.info('model %s: %.2fM params, %d classes, input %s; %d processes x batch %d, lr %.3g, epochs %d..%d of %d',
                 args.model, params / 1e6, args.num_classes, data_config['input_size'], world_size, args.batch_size,
                 lr, start_epoch, end_epoch, num_epochs)

    history: List[Dict[str, Any]] = []
    best = (None, None)
    for epoch in range(start_epoch, end_epoch):
        # every RNG from (seed, epoch, rank): shuffling, augmentation, mixup, drop path, layer shuffles
        random_seed(args.seed + 1000 * (epoch + 1), rank)
        if hasattr(train_loader.sampler, 'set_epoch'):
            train_loader.sampler.set_epoch(epoch)
        stats, num_updates = train_one_epoch(
            model, raw_model, train_loader, optimizer, loss_fn, device, args, scheduler, num_updates,
            model_ema=model_ema, mixup_fn=mixup_fn, scaler=scaler, kd=kd, show_progress=show_progress)
        record: Dict[str, Any] = {'epoch': epoch, 'updates': num_updates, **stats}
        metric = None
        if (epoch + 1) % args.eval_interval == 0 or epoch + 1 == num_epochs or epoch + 1 == end_epoch:
            ev = evaluate(raw_model, eval_loader, device, args.amp, args.amp_dtype, show_progress)
            record.update({'eval_loss': ev['loss'], 'top1': ev['top1'], 'top5': ev['top5'],
                           'eval_images': ev['images'], 'eval_images_per_s': ev['images_per_s']})
            if model_ema is not None:
                ev_ema = evaluate(model_ema.module, eval_loader, device, args.amp, args.amp_dtype, show_progress)
                record.update({'ema_eval_loss': ev_ema['loss'], 'ema_top1': ev_ema['top1'], 'ema_top5': ev_ema['top5']})
            prefix = 'ema_' if model_ema is not None and args.checkpoint_metric_ema else ''
            metric = record[prefix + ('eval_loss' if args.eval_metric == 'loss' else args.eval_metric)]
        scheduler.step(epoch + 1, metric)
        if rank == 0:
            best = saver.save_checkpoint(epoch, metric=metric)
            with open(log_path, 'a') as f:
                f.write(json.dumps(record) + '\n')
            _logger.info('epoch %d: loss %.4f lr %.3g %s%.0f img/s', epoch, record['train_loss'], record['lr'],
                         f"top-1 {record['top1']:.2f} top-5 {record['top5']:.2f} " if 'top1' in record else '',
                         record['train_images_per_s'])
        history.append(record)

    if rank == 0:
        from .plot import plot_curves
        plot_curves(log_path, os.path.join(output, 'curves.png'))
    if distributed:
        dist.barrier()
    return {'output': output, 'log': history, 'best_metric': best[0], 'best_epoch': best[1],
            'model': raw_model, 'model_ema': model_ema}


def train_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_train_args(argv)
    try:
        return train(args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

"""Config helpers for the restoration recipes in configs/restoration (plain dicts, no mmengine needed)."""


def sr_rescale(base, scale, init_checkpoint, max_iters=None):
    """Config overrides that fine-tune the x2 SR recipe `base` at `scale` from its x2 weights.

    Folders, names, patches and metric crops follow `scale`; the upsampler starts fresh (non-strict load);
    `max_iters` shortens the schedule, milestones scaled alike.
    """
    if scale not in (2, 3, 4):
        raise ValueError(f'scale must be 2, 3 or 4, got {scale!r}')

    def rename(path):
        return path.replace('X2', f'X{scale}')

    train = base['train_dataloader']['dataset']
    model_name = base['model']['generator']['model_name']
    if not model_name.endswith('_x2'):
        raise ValueError(f"base model must be an x2 network ('..._x2'), got {model_name!r}")
    out = dict(
        model=dict(generator=dict(model_name=model_name[:-1] + str(scale)), scale=scale,
                   init_checkpoint=init_checkpoint, init_strict=False),
        train_dataloader=dict(dataset=dict(lq_dir=rename(train['lq_dir']), filename_tmpl='{}' + f'x{scale}',
                                           scale=scale, gt_patch_size=train['gt_patch_size'] // 2 * scale)),
        val_evaluator=[dict(type=metric, crop_border=scale, test_y_channel=True) for metric in ('PSNR', 'SSIM')],
    )
    for loader in ('val_dataloader', 'test_dataloader'):
        out[loader] = dict(dataset=dict(lq_dir=rename(base[loader]['dataset']['lq_dir']), scale=scale))
    out['test_evaluator'] = out['val_evaluator']
    if max_iters is not None:
        ratio = max_iters / base['train_cfg']['max_iters']
        out['train_cfg'] = dict(max_iters=max_iters)
        out['param_scheduler'] = dict(milestones=[round(m * ratio) for m in base['param_scheduler']['milestones']])
    return out

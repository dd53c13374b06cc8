# Shared runtime of the iteration-based mmengine recipes (restoration, change detection): mmengine's hooks and loops,
# a checkpoint kept per interval and the best one by the recipe's metric (higher is better).
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'), dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

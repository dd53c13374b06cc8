# Shared runtime of the change-detection recipes: iteration-based training on mmengine's registries only.
_base_ = ['../../_base_/iter_runtime.py']
custom_imports = dict(imports=['vimamba.downstream.change_detection'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=100),
                     checkpoint=dict(interval=4000, max_keep_ckpts=3, save_best='f1'))
randomness = dict(seed=0)

train_cfg = dict(type='IterBasedTrainLoop', max_iters=320000, val_interval=4000)

# ChangeMamba's optimiser: AdamW 1e-4, weight decay 5e-4, constant rate for binary change detection.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=5e-4))

# Shared runtime of the restoration recipes: iteration-based training, mmengine registries only.
_base_ = ['../../_base_/iter_runtime.py']
custom_imports = dict(imports=['vimamba.downstream.restoration'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=200),
                     checkpoint=dict(interval=5000, max_keep_ckpts=5, save_best='PSNR'))
randomness = dict(seed=10)

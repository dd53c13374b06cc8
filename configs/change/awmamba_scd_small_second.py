# AWMambaSCD-S on SECOND
# (AtrousMamba, arXiv 2507.16172; details PROPOSED where the paper is silent: docs/families.md#atrousmamba).
# ChangeMamba's recipe: AdamW 1e-4 (wd 5e-4), batch 16, 256 crops, 800k iterations, rate halved
# every 10k iterations (its StepLR).
#   python tools/train.py configs/change/awmamba_scd_small_second.py
#   python tools/test.py configs/change/awmamba_scd_small_second.py work_dirs/<name>/best_*.pth
_base_ = ['./_base_/runtime.py', './_base_/datasets/second.py', './_base_/models/awmamba_scd_tiny.py']

# 58,511,753 parameters (= ChangeMamba MambaSCD-S); VMamba weights: vssm_small_0229_ckpt_epoch_222.pth
# (ChangeMamba's README) through encoder.checkpoint.
model = dict(encoder=dict(
    model_name='atrousmamba_small',
    model_kwargs=dict(depths=(2, 2, 15, 2), drop_path_rate=0.3)))
default_hooks = dict(checkpoint=dict(save_best='sek'))
train_cfg = dict(max_iters=800000)
param_scheduler = dict(type='StepLR', by_epoch=False, step_size=10000, gamma=0.5)

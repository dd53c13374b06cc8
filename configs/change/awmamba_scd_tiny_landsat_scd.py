# AWMambaSCD-T on Landsat-SCD
# (AtrousMamba, arXiv 2507.16172; details PROPOSED where the paper is silent: docs/families.md#atrousmamba).
# ChangeMamba's recipe: AdamW 1e-4 (wd 5e-4), batch 16, 256 crops, 800k iterations, rate halved
# every 10k iterations (its StepLR).
#   python tools/train.py configs/change/awmamba_scd_tiny_landsat_scd.py
#   python tools/test.py configs/change/awmamba_scd_tiny_landsat_scd.py work_dirs/<name>/best_*.pth
_base_ = ['./_base_/runtime.py', './_base_/datasets/landsat_scd.py', './_base_/models/awmamba_scd_tiny.py']

model = dict(num_classes=5)
default_hooks = dict(checkpoint=dict(save_best='sek'))
train_cfg = dict(max_iters=800000)
param_scheduler = dict(type='StepLR', by_epoch=False, step_size=10000, gamma=0.5)

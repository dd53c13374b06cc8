# MaIR-S lightweight SR x2: DIV2K train HR with its bicubic LR images, 128 px GT patches
# with flips / rotations, batch 16 per GPU x 2 GPUs, Adam 2e-4 (0.9, 0.99), L1, 500k iterations halving at
# 250k / 400k / 450k / 475k. Validation Urban100, test Set5 (Y channel, border = scale, official 200 px tiles).
# Layout:  data/DIV2K/DIV2K_train_HR/0001.png  data/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png
#          data/SR/Set5/HR/baby.png  data/SR/Set5/LR_bicubic/X2/baby.png
# Without the LR folders, drop lq_dir and add degradation=dict(type='bicubic') to make them on the fly.
# Other benchmarks: --cfg-options test_dataloader.dataset.gt_dir=data/SR/B100/HR
#                   test_dataloader.dataset.lq_dir=data/SR/B100/LR_bicubic/X2
_base_ = ['./_base_/paired.py']

model = dict(generator=dict(model_name='mair_light_s_x2'), scale=2)

train_dataloader = dict(
    batch_size=16,
    dataset=dict(gt_dir='data/DIV2K/DIV2K_train_HR', lq_dir='data/DIV2K/DIV2K_train_LR_bicubic/X2',
                 filename_tmpl='{}x2', scale=2, gt_patch_size=128),
)
val_dataloader = dict(dataset=dict(gt_dir='data/SR/Urban100/HR', lq_dir='data/SR/Urban100/LR_bicubic/X2', scale=2))
test_dataloader = dict(dataset=dict(gt_dir='data/SR/Set5/HR', lq_dir='data/SR/Set5/LR_bicubic/X2', scale=2))
val_evaluator = [dict(type=metric, crop_border=2, test_y_channel=True) for metric in ('PSNR', 'SSIM')]
test_evaluator = val_evaluator

train_cfg = dict(max_iters=500000, val_interval=25000)
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000], gamma=0.5)

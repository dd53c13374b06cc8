# MaIR-S lightweight SR x2: DIV2K train HR with its bicubic LR images, 128 px GT patches
# with flips / rotations, batch 16 per GPU x 2 GPUs, Adam 2e-4 (0.9, 0.99), L1, 500k iterations halving at
# 250k / 400k / 450k / 475k. Validation Urban100, test Set5 (Y channel, border = scale, official 200 px tiles).
# Layout:  data/DIV2K/DIV2K_train_HR/0001.png  data/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png
#          data/SR/Set5/HR/baby.png  data/SR/Set5/LR_bicubic/X2/baby.png
# Without the LR folders, drop lq_dir and add degradation=dict(type='bicubic') to make them on the fly.
# Other benchmarks: --cfg-options test_dataloader.dataset.gt_dir=data/SR/B100/HR
#                   test_dataloader.dataset.lq_dir=data/SR/B100/LR_bicubic/X2
_base_ = ['./_base_/runtime.py']

model = dict(
    type='Restorer',
    generator=dict(model_name='mair_light_s_x2'),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    scale=2,
    test_cfg=dict(tile_size=200, self_ensemble=False),
)

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='PairedImageDataset', gt_dir='data/DIV2K/DIV2K_train_HR',
                 lq_dir='data/DIV2K/DIV2K_train_LR_bicubic/X2', filename_tmpl='{}x2',
                 scale=2, gt_patch_size=128, use_hflip=True, use_rot=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='PairedImageDataset', gt_dir='data/SR/Urban100/HR', lq_dir='data/SR/Urban100/LR_bicubic/X2',
                 scale=2, test_mode=True),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='PairedImageDataset', gt_dir='data/SR/Set5/HR', lq_dir='data/SR/Set5/LR_bicubic/X2',
                 scale=2, test_mode=True),
)
val_evaluator = [dict(type='PSNR', crop_border=2, test_y_channel=True),
                 dict(type='SSIM', crop_border=2, test_y_channel=True)]
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=500000, val_interval=25000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.99), weight_decay=0.))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000], gamma=0.5)

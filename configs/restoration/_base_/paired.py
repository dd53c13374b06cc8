# Shared skeleton of the restoration recipes: a Restorer on paired images (flips / rotations in training, whole
# images one at a time in evaluation), RGB PSNR / SSIM without border, Adam 2e-4 (0.9, 0.99); each recipe sets
# its network, data, schedule and what differs.
_base_ = ['./runtime.py']

model = dict(
    type='Restorer',
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    scale=1,
    test_cfg=dict(tile_size=200, self_ensemble=False),
)

train_dataloader = dict(
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='PairedImageDataset', use_hflip=True, use_rot=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='PairedImageDataset', test_mode=True),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=metric, crop_border=0, test_y_channel=False) for metric in ('PSNR', 'SSIM')]
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', val_interval=50000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.99), weight_decay=0.))

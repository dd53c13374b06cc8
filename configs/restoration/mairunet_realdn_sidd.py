# MaIRUNet real-image denoising on SIDD (Restormer's recipe): 512 px SIDD crops, progressive
# patches 128 / 160 / 192 / 256 px with 4 / 2 / 1 / 1 images per GPU for 184k / 160k / 192k / 182.25k iterations
# (the loader delivers 4 x 256 px; the model subsamples and crops), x 8 GPUs, flips / rotations, mixup
# (Beta(1.2, 1.2), half of the batches), AdamW 3e-4 (0.9, 0.999) wd 1e-4, gradient norm clipped at 0.01, L1,
# 718,250 iterations: 3e-4 for 184k, then cosine to 1e-6 over 544k. Validation / test on the SIDD validation
# crops, RGB PSNR / SSIM without border; the model pads to a multiple of 8 and crops back (no tiling).
# Layout: data/SIDD/train/{input_crops,target_crops}/*.png   data/SIDD/val/{input_crops,target_crops}/*.png
_base_ = ['./_base_/paired.py']

model = dict(
    generator=dict(model_name='mairunet_realdn'),
    train_cfg=dict(
        progressive=dict(iters=[184000, 160000, 192000, 182250], patch_sizes=[128, 160, 192, 256],
                         batch_sizes=[4, 2, 1, 1]),
        mixup_beta=1.2),
    test_cfg=dict(tile_size=None),
)

train_dataloader = dict(
    batch_size=4,
    dataset=dict(gt_dir='data/SIDD/train/target_crops', lq_dir='data/SIDD/train/input_crops', gt_patch_size=256),
)
val_dataloader = dict(dataset=dict(gt_dir='data/SIDD/val/target_crops', lq_dir='data/SIDD/val/input_crops'))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=718250)
optim_wrapper = dict(clip_grad=dict(max_norm=0.01),
                     optimizer=dict(type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=1e-4))
# CosineAnnealingRestartCyclicLR(periods=[184000, 544000], eta_mins=[3e-4, 1e-6]): flat, then one cosine.
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, begin=184000, end=728000, T_max=544000, eta_min=1e-6)

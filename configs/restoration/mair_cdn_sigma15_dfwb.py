# MaIR colour Gaussian denoising, sigma 15: DFWB (DIV2K + Flickr2K + BSD400 + WED) clean
# images with white noise added on the fly (fresh noise each time), 128 px patches with flips / rotations,
# batch 1 per GPU x 8 GPUs, Adam 2e-4 (0.9, 0.99), Charbonnier loss, 3.2M iterations halving at
# 1.6M / 2.1M / 2.5M / 2.8M / 3.0M. Validation McMaster, test CBSD68: noise seeded per image (seed 0, the
# official evaluation noise), PSNR / SSIM on RGB without border (the colour-denoising protocol; the official
# test files say Y, their training files RGB).
# Layout: data/DFWB/*.png (clean images, any names); data/Denoise/{CBSD68,Kodak24,McMaster,Urban100}/*.png
# Other benchmarks: --cfg-options test_dataloader.dataset.gt_dir=data/Denoise/Kodak24
_base_ = ['./_base_/paired.py']

sigma = 15
model = dict(generator=dict(model_name='mair_cdn'), pixel_loss=dict(type='CharbonnierLoss'))

train_dataloader = dict(
    batch_size=1,
    dataset=dict(gt_dir='data/DFWB', degradation=dict(type='gaussian_noise', sigma=sigma), gt_patch_size=128),
)
val_dataloader = dict(dataset=dict(gt_dir='data/Denoise/McMaster',
                                   degradation=dict(type='gaussian_noise', sigma=sigma)))
test_dataloader = dict(dataset=dict(gt_dir='data/Denoise/CBSD68', degradation=val_dataloader['dataset']['degradation']))

train_cfg = dict(max_iters=3200000)
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[1600000, 2100000, 2500000, 2800000, 3000000],
                       gamma=0.5)

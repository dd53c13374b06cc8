# MaIRUNet dehazing on RESIDE ITS (indoor): 256 px patches (small images padded), flips / rotations, batch 6 per
# GPU x 2 GPUs, AdamW 2e-4 (0.9, 0.999) wd 1e-4, gradient norm clipped at 0.01, L1, 700k iterations: 2e-4 for 184k,
# then cosine to 1e-6 over 516k. Test SOTS indoor, RGB PSNR / SSIM without border. Hazy files pair with their clear
# image by the number before the first underscore (hazy/1_1_0.90179.png -> gt/1.png).
# Layout: data/RESIDE/ITS/{hazy,gt}/   data/RESIDE/SOTS/indoor/{hazy,gt}/
_base_ = ['./_base_/paired.py']

model = dict(generator=dict(model_name='mairunet_dehaze'), test_cfg=dict(tile_size=None))

train_dataloader = dict(
    batch_size=6,
    dataset=dict(gt_dir='data/RESIDE/ITS/gt', lq_dir='data/RESIDE/ITS/hazy', pairing='haze', gt_patch_size=256),
)
val_dataloader = dict(dataset=dict(gt_dir='data/RESIDE/SOTS/indoor/gt', lq_dir='data/RESIDE/SOTS/indoor/hazy',
                                   pairing='haze'))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=700000)
optim_wrapper = dict(clip_grad=dict(max_norm=0.01), optimizer=dict(type='AdamW', betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, begin=184000, end=700000, T_max=516000, eta_min=1e-6)

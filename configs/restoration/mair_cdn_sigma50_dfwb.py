# MaIR colour Gaussian denoising, sigma 50: fine-tuned from the sigma-15 model (same network, strict load),
# 1.6M iterations halving at 200k / 800k / 1.2M / 1.4M / 1.5M; otherwise as mair_cdn_sigma15_dfwb.py.
_base_ = ['./mair_cdn_sigma15_dfwb.py']

model = dict(init_checkpoint='checkpoints/MaIR_CDN_s15.pth', init_strict=True)
train_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))
val_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))
test_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))

train_cfg = dict(max_iters=1600000)
param_scheduler = dict(milestones=[200000, 800000, 1200000, 1400000, 1500000])

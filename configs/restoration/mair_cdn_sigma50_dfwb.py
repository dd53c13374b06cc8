# MaIR colour Gaussian denoising, sigma 50: fine-tuned from the sigma-15 model (same network, strict load),
# 1.6M iterations halving at 200k / 800k / 1.2M / 1.4M / 1.5M; otherwise as mair_cdn_sigma15_dfwb.py
# (the sigma-25 recipe with sigma 50).
_base_ = ['./mair_cdn_sigma25_dfwb.py']

train_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))
val_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))
test_dataloader = dict(dataset=dict(degradation=dict(sigma=50)))

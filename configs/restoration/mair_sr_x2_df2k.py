# MaIR classical SR x2, mair_light_s_x2_div2k.py with the full network: DF2K (DIV2K + Flickr2K) with MATLAB-bicubic
# LR images, 128 px GT patches with flips / rotations, batch 4 per GPU x 8 GPUs, Adam 2e-4 (0.9, 0.99), L1,
# 500k iterations halving at 250k / 400k / 450k / 475k. Validation Set14, test Set5 (Y channel, border = scale,
# official 200 px tiles). Layout:  data/DF2K/HR/0001.png  data/DF2K/X2/0001x2.png
#                                  data/SR/Set5/HR/baby.png  data/SR/Set5/LR_bicubic/X2/baby.png
# Without the LR folders, drop lq_dir and add degradation=dict(type='bicubic') to make them on the fly.
# Other benchmarks: --cfg-options test_dataloader.dataset.gt_dir=data/SR/Urban100/HR
#                   test_dataloader.dataset.lq_dir=data/SR/Urban100/LR_bicubic/X2   (Set14, B100, Manga109 alike)
# MaIR+ (x8 self-ensemble): --cfg-options model.test_cfg.self_ensemble=True
_base_ = ['./mair_light_s_x2_div2k.py']

model = dict(generator=dict(model_name='mair_sr_x2'))

train_dataloader = dict(batch_size=4, dataset=dict(gt_dir='data/DF2K/HR', lq_dir='data/DF2K/X2'))
val_dataloader = dict(dataset=dict(gt_dir='data/SR/Set14/HR', lq_dir='data/SR/Set14/LR_bicubic/X2'))

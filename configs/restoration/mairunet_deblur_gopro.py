# MaIRUNet motion deblurring on GoPro: the real-denoising recipe (mairunet_realdn_sidd.py) without mixup, on the
# GoPro training crops; test on the GoPro test set (HIDE alike), RGB PSNR / SSIM without border.
# Layout: data/GoPro/train/{input,target}/*.png   data/GoPro/test/{input,target}/*.png   data/HIDE/{input,target}
_base_ = ['./mairunet_realdn_sidd.py']

model = dict(generator=dict(model_name='mairunet_deblur'), train_cfg=dict(mixup_beta=None))
train_dataloader = dict(dataset=dict(gt_dir='data/GoPro/train/target', lq_dir='data/GoPro/train/input'))
val_dataloader = dict(dataset=dict(gt_dir='data/GoPro/test/target', lq_dir='data/GoPro/test/input'))
test_dataloader = val_dataloader

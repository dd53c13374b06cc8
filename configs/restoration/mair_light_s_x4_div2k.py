# MaIR-S lightweight SR x4: fine-tuned from the MaIR-S x2 model (the upsampler, whose shape differs, starts
# fresh), 256 px GT patches, 500k iterations as x2;
# otherwise as mair_light_s_x2_div2k.py.
_base_ = ['./mair_light_s_x2_div2k.py']

model = dict(generator=dict(model_name='mair_light_s_x4'), scale=4,
             init_checkpoint='checkpoints/MaIR_S_lightSR_x2.pth', init_strict=False)

train_dataloader = dict(dataset=dict(lq_dir='data/DIV2K/DIV2K_train_LR_bicubic/X4', filename_tmpl='{}x4',
                                     scale=4, gt_patch_size=256))
val_dataloader = dict(dataset=dict(lq_dir='data/SR/Urban100/LR_bicubic/X4', scale=4))
test_dataloader = dict(dataset=dict(lq_dir='data/SR/Set5/LR_bicubic/X4', scale=4))
val_evaluator = [dict(type='PSNR', crop_border=4, test_y_channel=True),
                 dict(type='SSIM', crop_border=4, test_y_channel=True)]
test_evaluator = val_evaluator

train_cfg = dict(max_iters=500000)
param_scheduler = dict(milestones=[250000, 400000, 450000, 475000])

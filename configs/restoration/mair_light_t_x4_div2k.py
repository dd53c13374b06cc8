# MaIR-T lightweight SR x4: fine-tuned from the MaIR-T x2 model (the upsampler, whose shape differs, starts
# fresh), 256 px GT patches, 250k iterations halving at 125k / 200k / 225k / 237.5k;
# otherwise as mair_light_t_x2_div2k.py.
_base_ = ['./mair_light_t_x2_div2k.py']

model = dict(generator=dict(model_name='mair_light_t_x4'), scale=4,
             init_checkpoint='checkpoints/MaIR_T_lightSR_x2.pth', init_strict=False)

train_dataloader = dict(dataset=dict(lq_dir='data/DIV2K/DIV2K_train_LR_bicubic/X4', filename_tmpl='{}x4',
                                     scale=4, gt_patch_size=256))
val_dataloader = dict(dataset=dict(lq_dir='data/SR/Urban100/LR_bicubic/X4', scale=4))
test_dataloader = dict(dataset=dict(lq_dir='data/SR/Set5/LR_bicubic/X4', scale=4))
val_evaluator = [dict(type='PSNR', crop_border=4, test_y_channel=True),
                 dict(type='SSIM', crop_border=4, test_y_channel=True)]
test_evaluator = val_evaluator

train_cfg = dict(max_iters=250000)
param_scheduler = dict(milestones=[125000, 200000, 225000, 237500])

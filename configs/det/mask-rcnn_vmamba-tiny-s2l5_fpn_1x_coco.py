# VMamba-T v2 (s2l5) + Mask R-CNN 1x (1333x800), COCO: VMamba's published recipe (official: 47.4 box / 42.7 mask
# AP; 50M params, 270 GFLOPs). Stages 0-3 at strides 4-32 each through a LayerNorm (VMamba's outnorm), FPN, drop
# path 0.2, AdamW 1e-4, wd 0.05 (none on norms; here also none on A_log and D), no layer decay, 1000 warm-up
# iterations, 12 epochs with steps at 8 and 11, 16 images per iteration; the backbone starts from the VMamba-T
# ImageNet-1k release checkpoint.
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='vmamba_tiny_s2l5', out_indices=(0, 1, 2, 3), drop_path_rate=0.2, out_norm=True,
                  pyramid='none',
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/'
                                           '%23v2cls/vssm_tiny_0230_ckpt_epoch_262.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=1.0))

# VMamba-T v2 (s1l8) + Mask R-CNN 1x (1333x800), COCO: VMamba's published recipe (official: 47.3 box / 42.7 mask
# AP; 50M params, 271 GFLOPs); the recipe of mask-rcnn_vmamba-tiny-s2l5 with the s1l8 backbone and its
# ImageNet-1k release checkpoint.
_base_ = ['./mask-rcnn_vmamba-tiny-s2l5_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='vmamba_tiny_s1l8',
                  init_cfg=dict(checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/'
                                           '%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth')),
)

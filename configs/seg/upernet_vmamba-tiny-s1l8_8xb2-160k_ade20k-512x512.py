# VMamba-T v2 (s1l8) + UperNet, ADE20K 512x512: VMamba's published recipe (official: 47.9 mIoU single-scale, 48.8
# multi-scale; 62M params, 949 GFLOPs); the recipe of upernet_vmamba-tiny-s2l5 with the s1l8 backbone and its
# ImageNet-1k release checkpoint.
_base_ = ['./upernet_vmamba-tiny-s2l5_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='vmamba_tiny_s1l8',
                  init_cfg=dict(checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/'
                                           '%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth')),
)

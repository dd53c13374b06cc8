# VMamba-T v2 (s2l5) + UperNet, ADE20K 512x512: VMamba's published recipe (official: 48.3 mIoU single-scale, 48.6
# multi-scale; 62M params, 948 GFLOPs). Stages 0-3 at strides 4-32 each through a LayerNorm (VMamba's outnorm),
# UPerHead channels 512, drop path 0.2, AdamW 6e-5, wd 0.01 (none on norms; here also none on A_log and D), no
# layer decay, 1500 warm-up iterations then poly to 160k, 16 images per iteration, whole-image test; the backbone
# starts from the VMamba-T ImageNet-1k release checkpoint.
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='vmamba_tiny_s2l5', img_size=None, out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
                  out_norm=True, pyramid='none',
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/'
                                           '%23v2cls/vssm_tiny_0230_ckpt_epoch_262.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384, in_index=2),
    test_cfg=dict(_delete_=True, mode='whole'),
)

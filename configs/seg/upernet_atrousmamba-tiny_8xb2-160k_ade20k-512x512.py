# AtrousMamba-T (the AWVSS backbone: VMamba-T v2 with atrous-window scans) + UperNet, ADE20K 512x512.
# No official segmentation result exists (the paper reports change detection only); this is VMamba-T's UperNet
# recipe: stages 0-3 at strides 4-32 each through a LayerNorm (VMamba's outnorm), UPerHead
# channels 512, AdamW 6e-5, wd 0.01, no layer decay, 1500 warm-up iterations then poly to 160k, 16 images per
# iteration, whole-image test; drop path 0.3 (the stock Swin-T UperNet value).
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='atrousmamba_tiny', img_size=None, out_indices=(0, 1, 2, 3), drop_path_rate=0.3,
                  out_norm=True, pyramid='none'),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384, in_index=2),
    test_cfg=dict(_delete_=True, mode='whole'),
)

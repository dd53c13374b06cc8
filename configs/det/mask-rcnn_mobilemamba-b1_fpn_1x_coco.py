# MobileMamba-B1 + Mask R-CNN 1x (1333x800; officially 40.6 box AP / 37.4 mask AP).
# Official recipe kept: stages 1-3 (strides 16, 32, 64), BatchNorm frozen in eval (norm_eval), AdamW 2e-4, wd 0.05,
# 12 epochs, 16 images per iteration; strides 4 and 8 made from the stride-16 stage by transposed convs, so the
# FPN gets 5 levels (4-64), as the official EfficientViT-style neck does.
# Deliberate difference: the transposed convs sit in the backbone's pyramid and feed mmdet's standard FPN, instead
# of being built from the stride-16 FPN lateral; no layer decay (the official recipe has none).
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        model_name='mobilemamba_b1', out_indices=(1, 2, 3), drop_path_rate=0.03, norm_eval=True,
        pyramid='deconv', pyramid_strides=(4, 8, 16, 32, 64), pyramid_norm_cfg=dict(type='LN2d')),
    neck=dict(in_channels=[200, 200, 200, 376, 448], num_outs=5),
)
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(layer_decay_rate=1.0))

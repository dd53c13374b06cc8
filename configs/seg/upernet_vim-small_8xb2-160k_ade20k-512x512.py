# Vim-S + UperNet, ADE20K 512x512 (paper: 44.9 mIoU).
# Official recipe kept: residual-stream features (the official small script's use_residual_as_feature), blocks
# 5/11/17/23, deconv pyramid, UPerHead channels = 384, AdamW lr 1e-4, wd 0.05, layer decay 0.95, slide test.
# Deliberate differences: as the tiny config (160k x 16, real layer decay, no RoPE: the official small config
# turns RoPE on although the ImageNet checkpoint has none), drop path 0.1.
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(
        model_name='vim_small_patch16_224', out_indices=(5, 11, 17, 23), drop_path_rate=0.1,
        model_kwargs=dict(feature_source='residual')),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),
    auxiliary_head=dict(in_channels=384),
)
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.95),
)

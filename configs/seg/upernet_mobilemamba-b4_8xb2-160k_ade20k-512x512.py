# MobileMamba-B4 + UperNet, ADE20K 512x512.
# The official repository reports Semantic FPN (160k, 42.5 mIoU), DeepLabv3 and PSPNet with B4 ImageNet weights,
# AdamW lr 1.2e-4 and a x10 learning rate on the heads; no UperNet. Kept: B4 (the 512-px ImageNet model),
# stages 1-3 (strides 16, 32, 64), BatchNorm trained (norm_eval False, as the official seg backbone), AdamW 1.2e-4
# with heads x10. Chosen here: UperNet for comparability with the other families; a stride-8 level made from the
# stride-16 stage by a transposed conv (pyramid strides 8, 16, 32, 64; the official detection neck adds its
# finer levels the same way); weight decay 0.01 as the other ADE20K configs; whole-image test (no pos embed).
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(
        model_name='mobilemamba_b4', img_size=None, out_indices=(1, 2, 3), drop_path_rate=0.03,
        pyramid='deconv', pyramid_strides=(8, 16, 32, 64)),
    decode_head=dict(in_channels=[200, 200, 376, 448]),
    auxiliary_head=dict(in_channels=376, in_index=2),
    test_cfg=dict(_delete_=True, mode='whole'),
)
optim_wrapper = dict(
    optimizer=dict(lr=1.2e-4),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.), 'auxiliary_head': dict(lr_mult=10.)}),
)

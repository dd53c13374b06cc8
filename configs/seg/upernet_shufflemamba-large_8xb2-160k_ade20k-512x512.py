# ShuffleMamba-large + UperNet, ADE20K 512x512 (plain backbone):
# upernet_shufflemamba-base_8xb2-160k_ade20k-512x512.py (the official settings and deliberate differences)
# with the large backbone, mixer outputs of blocks (9, 19, 29, 39), AdamW lr 3e-5 and grad clip 3 (official).
_base_ = ['./upernet_shufflemamba-base_8xb2-160k_ade20k-512x512.py']

model = dict(backbone=dict(model_name='shufflemamba_large_patch16_224', out_indices=(9, 19, 29, 39)),
             decode_head=dict(in_channels=[1024] * 4), auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=3e-5), clip_grad=dict(max_norm=3.0, norm_type=2))

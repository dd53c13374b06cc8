# ShuffleMamba-middle + UperNet, ADE20K 512x512 (plain backbone):
# upernet_shufflemamba-base_8xb2-160k_ade20k-512x512.py (the official settings and deliberate differences)
# with the middle backbone, mixer outputs of blocks (7, 15, 23, 31) and drop path 0.3 (official).
_base_ = ['./upernet_shufflemamba-base_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='shufflemamba_middle_patch16_224', out_indices=(7, 15, 23, 31), drop_path_rate=0.3),
    decode_head=dict(in_channels=[576] * 4), auxiliary_head=dict(in_channels=576))

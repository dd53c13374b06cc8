# LBVim-528 + UperNet, ADE20K 512x512.
# Official recipe kept: mixer outputs of blocks 5/11/17/23, each through a new LayerNorm (out_norm), UPerHead
# channels 512, AdamW lr 6e-5, wd 0.01, no layer decay, no weight decay on pos_embed / norms / A_log / D, 1500
# warm-up iterations then poly to 160k, 16 images per iteration, slide test 512/341.
# Deliberate differences:
# - the four maps go through the deconv / identity / max-pool pyramid (strides 4-32); the official config feeds
#   four stride-16 maps to UPerHead (pyramid='none' reproduces that).
# - the backbone keeps the pretraining RMSNorm (the official seg config builds LayerNorm over an RMSNorm
#   checkpoint: an untrained bias and mean-centring the weights never saw).
# - no Linear(528 -> 384) projection before the norms (the official out_dim); UPerHead takes 528 channels.
# - drop path 0.1 (the official config sets none).
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='lbvim_528_patch16_224', out_indices=(5, 11, 17, 23), out_norm=True,
                  drop_path_rate=0.1),
    decode_head=dict(in_channels=[528, 528, 528, 528]),
    auxiliary_head=dict(in_channels=528),
)

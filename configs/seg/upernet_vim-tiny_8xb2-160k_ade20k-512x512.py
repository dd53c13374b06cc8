# Vim-Ti + UperNet, ADE20K 512x512 (paper: 41.0 mIoU).
# Official recipe kept: features of blocks 5/11/17/23 (mixer outputs), the deconv / identity / max-pool pyramid
# with SyncBN, UPerHead channels = 192, AdamW lr 2e-4, wd 0.1, layer decay 0.92 over the 24 blocks, slide test.
# Deliberate differences:
# - 160k iterations x 16 images (the stock schedule) instead of the official 60k x 32.
# - the layer decay really decays every block (the official constructor looked for `blocks.N` in names that are
#   `layers.N`, so only patch_embed / pos_embed were scaled).
# - no RoPE; residual stream in fp32 (the official tiny config turns it off); position embedding resized around
#   the middle cls slot (the official resize assumes a head cls).
# - drop path 0.1: the official seg scripts do not state one (0.1 is Vim's detection value).
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='vim_tiny_patch16_224', out_indices=(5, 11, 17, 23), drop_path_rate=0.1),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=192),
    auxiliary_head=dict(in_channels=192),
)
optim_wrapper = dict(
    optimizer=dict(lr=2e-4, weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=0.92),
)

# ShuffleMamba-middle + UperNet, ADE20K 512x512 (plain backbone).
# Official recipe kept: mixer outputs of blocks (7, 15, 23, 31), drop path 0.3, UPerHead channels 512, auxiliary FCN on
# the last map (index 3), AdamW lr 6e-5, wd 0.01, no weight decay on pos_embed / cls_token / norms /
# A_log / D, 1500 warm-up iterations then poly to 160k, 8 GPUs x 2 images, slide test 512/341, no layer shuffle in
# fine-tuning (shuffle_rate 0).
# Deliberate differences:
# - the four maps go through the deconv / identity / max-pool pyramid (strides 4-32); the official plain config
#   feeds four stride-16 maps (pyramid='none' reproduces that).
# - the last map is the mixer output like the others (the official one is norm_f(residual + hidden)).
_base_ = ['./_base_/upernet_vimamba_ade20k-512x512.py']

model = dict(
    backbone=dict(model_name='shufflemamba_middle_patch16_224', out_indices=(7, 15, 23, 31), drop_path_rate=0.3,
                  model_kwargs=dict(shuffle_rate=0.)),
    decode_head=dict(in_channels=[576, 576, 576, 576]),
    auxiliary_head=dict(in_channels=576, in_index=3),
)


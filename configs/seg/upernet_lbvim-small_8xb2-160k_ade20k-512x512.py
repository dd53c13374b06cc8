# LBVim-small + UperNet, ADE20K 512x512: upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py (its official recipe
# and deliberate differences) with the small backbone.
_base_ = ['./upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py']

model = dict(backbone=dict(model_name='lbvim_small_patch16_224'),
             decode_head=dict(in_channels=[384] * 4), auxiliary_head=dict(in_channels=384))

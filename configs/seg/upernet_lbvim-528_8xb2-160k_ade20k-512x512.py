# LBVim-528 + UperNet, ADE20K 512x512: upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py (its official recipe
# and deliberate differences) with the 528 backbone.
# One more deliberate difference:
# - no Linear(528 -> 384) projection before the norms (the official out_dim); UPerHead takes 528 channels.
_base_ = ['./upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py']

model = dict(backbone=dict(model_name='lbvim_528_patch16_224'),
             decode_head=dict(in_channels=[528] * 4), auxiliary_head=dict(in_channels=528))

# LBVim-300 + UperNet, ADE20K 512x512: upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py (its official recipe
# and deliberate differences) with the 300 backbone.
# One more deliberate difference:
# - no Linear(300 -> 192) projection before the norms (the official out_dim); UPerHead takes 300 channels.
_base_ = ['./upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py']

model = dict(backbone=dict(model_name='lbvim_300_patch16_224'),
             decode_head=dict(in_channels=[300] * 4), auxiliary_head=dict(in_channels=300))

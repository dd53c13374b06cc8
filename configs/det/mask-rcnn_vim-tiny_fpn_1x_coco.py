# Vim-Ti + Mask R-CNN 1x (1333x800). The official Vim detection results are Cascade Mask R-CNN in ViTDet's
# setting (see cascade-mask-rcnn_vim-tiny_sfp_8xb8-lsj-100e_coco.py); this is the standard mmdet 1x recipe
# used for the other families: features of blocks 5/11/17/23 through the deconv pyramid, FPN, AdamW 1e-4,
# wd 0.05, drop path 0.1 and layer decay 0.837 (Vim's ViTDet values).
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='vim_tiny_patch16_224', out_indices=(5, 11, 17, 23), drop_path_rate=0.1),
    neck=dict(in_channels=[192, 192, 192, 192]),
)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.837))

# Vim-S + Mask R-CNN 1x (1333x800): as the Vim-Ti config, with the residual-stream features of the official
# small segmentation backbone and Vim-S's ViTDet layer decay 0.837.
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='vim_small_patch16_224', out_indices=(5, 11, 17, 23), drop_path_rate=0.1,
                  model_kwargs=dict(feature_source='residual')),
    neck=dict(in_channels=[384, 384, 384, 384]),
)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.837))

# AtrousMamba-T (VMamba-T v2 with atrous-window scans) + Mask R-CNN 1x (1333x800). No official detection result
# exists (the paper reports change detection only); VMamba-T's Mask R-CNN recipe: stages 0-3 at strides 4-32 each
# through a LayerNorm (VMamba's outnorm), FPN, AdamW 1e-4, wd 0.05, drop path 0.2, no layer decay, 12 epochs.
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='atrousmamba_tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.2, out_norm=True,
                  pyramid='none'),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=1.0))

# LBVim-small + Mask R-CNN 1x (1333x800). The official LBVim detection config is Cascade Mask R-CNN in
# ViTDet's LSJ setting; this is the mmdet 1x recipe shared by the families: mixer outputs of
# blocks 5/11/17/23 each through a new LayerNorm (the official outnorm), deconv pyramid, FPN, AdamW 1e-4, wd 0.05,
# drop path 0.1 (the official value), layer decay 0.9 over the 24 blocks (the official 0.7 decayed only the
# patch embedding and position embedding).
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='lbvim_small_patch16_224', out_indices=(5, 11, 17, 23), out_norm=True,
                  drop_path_rate=0.1),
    neck=dict(in_channels=[384, 384, 384, 384]),
)

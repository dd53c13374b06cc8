# ShuffleMamba-large + Mask R-CNN 1x (1333x800).
# Official recipe kept: FPN (256 channels, 5 levels), 12 epochs with steps at 8 and 11, 1000 warm-up iterations,
# AdamW 1e-4, wd 0.05, layer decay 0.9 over the blocks, drop path 0.5, 8 GPUs x 2, no layer shuffle (shuffle_rate 0).
# Deliberate differences: the official detector uses the Mamba-Reg checkpoints inside a ViT-Adapter (deformable
# attention injectors / extractors, its own compiled op); here the plain model's mixer outputs of blocks
# (9, 19, 29, 39) go through the deconv / identity / max-pool pyramid (LayerNorm between the transposed convs).
_base_ = ['./_base_/mask-rcnn_vimamba_fpn_1x_coco.py']

model = dict(
    backbone=dict(model_name='shufflemamba_large_patch16_224', out_indices=(9, 19, 29, 39), drop_path_rate=0.5,
                  model_kwargs=dict(shuffle_rate=0.)),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]),
)

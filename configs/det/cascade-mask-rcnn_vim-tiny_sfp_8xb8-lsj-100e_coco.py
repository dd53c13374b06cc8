# Vim-Ti + Cascade Mask R-CNN with a simple feature pyramid, ViTDet style (paper: 45.7 box
# AP, 39.2 mask AP). The official run is detectron2's ViTDet; this is its mmdet form:
# - simple feature pyramid: ONLY the last block's map (stride 16) is taken, and strides 4, 8, 16, 32 are made
#   from it (x4: ConvT-LN-GELU-ConvT, x2: ConvT, identity, max-pool), then FPN to 256 channels plus a pooled p6;
# - large-scale jitter at 1024 (resize 0.1-2.0, crop 1024) for 100 epochs (mmdet's lsj-100e: 4 x 25 epochs, steps
#   at 88 and 96 epochs ~ ViTDet's 163,889 / 177,546 of 184,375 iterations), 64 images per iteration (8 x 8),
#   250 warm-up iterations; AdamW 1e-4, wd 0.1, layer decay 0.837 ("adj1" Vim-Ti), drop path 0.1.
# Deliberate differences: no RoPE (our Vim has none, nor does the ImageNet checkpoint); the middle cls token stays
# in the sequence (the official Vim-Ti detector has none); the neck is mmdet's FPN (a top-down path ViTDet's
# simple pyramid does not have) and the heads are mmdet's cascade heads (2 shared FCs, BN-free) instead of
# ViTDet's 4conv1fc heads with LayerNorm; the test resize is mmdet's 1333x800.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['vimamba.downstream.mm'], allow_failed_imports=False)

image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=[dict(type='BatchFixedSizePad', size=image_size)]),
    backbone=dict(
        _delete_=True,
        type='VimambaBackbone',
        model_name='vim_tiny_patch16_224',
        img_size=image_size,
        out_indices=(23,),
        drop_path_rate=0.1,
        pyramid='deconv',
        pyramid_strides=(4, 8, 16, 32),
        pyramid_norm_cfg=dict(type='LN2d'),
        pretrained=None,  # the ImageNet checkpoint to start from: an official file or tools/convert.py output
    ),
    neck=dict(in_channels=[192, 192, 192, 192], out_channels=256, num_outs=5),
)
train_dataloader = dict(batch_size=8, num_workers=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.837),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=64)

# Mask R-CNN + FPN on COCO (1333x800, 12 epochs, 16 images per iteration: 8 GPUs x 2) for a vimamba backbone.
# Variant configs set the backbone, the FPN input widths and the optimiser recipe.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['vimamba.downstream.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # also drops the ResNet's torchvision init_cfg
        type='VimambaBackbone',
        model_name='vim_tiny_patch16_224',
        # img_size left at the pretraining size: the (14 x 14) position embedding is resampled to the grid of every
        # padded input, as ViTDet does, instead of learning a 50 x 84 one
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.1,
        pyramid='deconv',
        # 2 images per GPU: a LayerNorm between the two transposed convs rather than BatchNorm
        pyramid_norm_cfg=dict(type='LN2d'),
        pretrained=None,  # the ImageNet checkpoint to start from: an official file or tools/convert.py output
    ),
    neck=dict(in_channels=[192, 192, 192, 192], out_channels=256, num_outs=5),
)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # no weight decay on position embeddings, cls / register tokens, norms, A_log, D
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)

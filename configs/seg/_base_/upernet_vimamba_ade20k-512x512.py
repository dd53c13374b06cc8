# UperNet on ADE20K 512x512, 160k iterations, 16 images per iteration (8 GPUs x 2), for a vimamba backbone.
# Variant configs set the backbone (model name, out_indices, widths of the heads) and the optimiser recipe.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['vimamba.downstream.mm'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # the Runner turns it into BN on one process
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='VimambaBackbone',
        model_name='vim_tiny_patch16_224',
        img_size=crop_size,
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.1,
        pyramid='deconv',  # plain families: strides 4, 8, 16, 32 from the stride-16 tokens
        pyramid_norm_cfg=norm_cfg,
        pretrained=None,  # the ImageNet checkpoint to start from: an official file or tools/convert.py output
    ),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=512, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=192, in_index=2, num_classes=150, norm_cfg=norm_cfg),
    # plain backbones see 512x512 windows as in pretraining-size fine-tuning (Vim, LBVim, ShuffleMamba: slide 512/341)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)),
)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # no weight decay on position embeddings, cls / register tokens, norms, A_log, D; layer decay off (1.0)
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

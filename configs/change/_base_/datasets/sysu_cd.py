# SYSU-CD (Shi et al. 2022), 256 x 256 pairs as distributed (time1/ time2/ label/).
# Layout:  data/SYSU-CD/{train,val,test}/time1/ time2/ label/  (same file names in every folder;
#          change masks 0 / 255). An optional list file per split selects and orders the names:
#          split_file='list.txt' (relative to the split folder), one name per line, extension optional.
# Training: random 256 crop, horizontal / vertical flips and 90-degree rotations, identical for both dates
# and the label (ChangeMamba's augmentation); evaluation on whole images.
dataset_type = 'BinaryChangeDataset'
data_root = 'data/SYSU-CD'
crop_size = 256

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/train', img_dirs=('time1', 'time2'), label_dir='label',
                 crop_size=crop_size, hflip=True, vflip=True, rot90=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/val', img_dirs=('time1', 'time2'), label_dir='label',
                 test_mode=True),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/test', img_dirs=('time1', 'time2'), label_dir='label',
                 test_mode=True),
)
val_evaluator = dict(type='BinaryChangeMetric')
test_evaluator = val_evaluator

# WHU-CD building change (Ji et al. 2019), cut into 256 x 256 tiles.
# Layout:  data/WHU-CD/{train,val,test}/A/ B/ label/  (same file names in every folder;
#          change masks 0 / 255). An optional list file per split selects and orders the names:
#          split_file='list.txt' (relative to the split folder), one name per line, extension optional.
# Training: random 256 crop, horizontal / vertical flips and 90-degree rotations, identical for both dates
# and the label (ChangeMamba's augmentation); evaluation on whole images.
dataset_type = 'BinaryChangeDataset'
data_root = 'data/WHU-CD'
crop_size = 256

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/train', img_dirs=('A', 'B'), label_dir='label',
                 crop_size=crop_size, hflip=True, vflip=True, rot90=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/val', img_dirs=('A', 'B'), label_dir='label',
                 test_mode=True),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/test', img_dirs=('A', 'B'), label_dir='label',
                 test_mode=True),
)
val_evaluator = dict(type='BinaryChangeMetric')
test_evaluator = val_evaluator

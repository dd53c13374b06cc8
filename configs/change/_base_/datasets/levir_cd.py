# LEVIR-CD (Chen & Shi 2020), the 256 x 256 tiles of the 1024 x 1024 scenes.
# Layout:  data/LEVIR-CD/{train,val,test}/A/ B/ label/  (same file names in every folder;
#          change masks 0 / 255). An optional list file per split selects and orders the names:
#          split_file='list.txt' (relative to the split folder), one name per line, extension optional.
# Training: random 256 crop, horizontal / vertical flips and 90-degree rotations, identical for both dates
# and the label (ChangeMamba's augmentation); evaluation on whole images.
_base_ = ['./loaders.py']
dataset_type = 'BinaryChangeDataset'
data_root = 'data/LEVIR-CD'
crop_size = 256

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root + '/train', img_dirs=('A', 'B'),
                                     label_dir='label', crop_size=crop_size, hflip=True, vflip=True, rot90=True))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root + '/val', img_dirs=('A', 'B'),
                                   label_dir='label', test_mode=True))
test_dataloader = dict(dataset=dict(val_dataloader['dataset'], data_root=data_root + '/test'))
val_evaluator = dict(type='BinaryChangeMetric')
test_evaluator = val_evaluator

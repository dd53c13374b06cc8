# Landsat-SCD (Yuan et al. 2022): 416 x 416 Landsat pairs, four land-cover classes + no change.
# Layout:  data/Landsat-SCD/{A,B,labelA,labelB}/<name>.png  with data/Landsat-SCD/list/{train,val,test}.txt.
# Labels are read as class-index maps (0 = no change); for a colour-coded copy set palette= to its colours (one
# RGB triple per class, no change first) and adjust the folder names to your copy.
_base_ = ['./loaders.py']
dataset_type = 'SemanticChangeDataset'
data_root = 'data/Landsat-SCD'
crop_size = 256
classes = ('no change', 'farmland', 'desert', 'building', 'water')
_folders = dict(img_dirs=('A', 'B'), label_dirs=('labelA', 'labelB'), palette=None, classes=classes)

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, split_file='list/train.txt',
                                     crop_size=crop_size, **_folders))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, split_file='list/val.txt', test_mode=True,
                                   **_folders))
test_dataloader = dict(dataset=dict(val_dataloader['dataset'], split_file='list/test.txt'))
val_evaluator = dict(type='SemanticChangeMetric', num_classes=len(classes), mode='per_date')
test_evaluator = val_evaluator

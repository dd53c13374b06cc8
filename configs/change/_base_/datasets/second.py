# SECOND (Yang et al., TPAMI 2021): 512 x 512 pairs, six land-cover classes + no change, colour-coded labels.
# Layout (the public release):  data/SECOND/{im1,im2,label1,label2}/<name>.png  with list files naming the
# train / test split (the release has no test labels; ChangeMamba's lists split the 2,968 labelled pairs):
#          data/SECOND/list/train.txt, data/SECOND/list/test.txt (one name per line, extension optional).
# Labels are mapped to classes by SECOND's palette (class 0 = no change, white); the change mask is label1 != 0.
_base_ = ['./loaders.py']
dataset_type = 'SemanticChangeDataset'
data_root = 'data/SECOND'
crop_size = 256
classes = ('unchanged', 'water', 'ground', 'low vegetation', 'tree', 'building', 'playground')
palette = ((255, 255, 255), (0, 0, 255), (128, 128, 128), (0, 128, 0), (0, 255, 0), (128, 0, 0), (255, 0, 0))
_folders = dict(img_dirs=('im1', 'im2'), label_dirs=('label1', 'label2'), palette=palette, classes=classes)

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, split_file='list/train.txt',
                                     crop_size=crop_size, **_folders))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, split_file='list/test.txt', test_mode=True,
                                   **_folders))
test_dataloader = val_dataloader
# 'per_date': SECOND's protocol (both dates' 7-class maps in one matrix); 'from_to' scores ChangeMamba's way.
val_evaluator = dict(type='SemanticChangeMetric', num_classes=len(classes), mode='per_date')
test_evaluator = val_evaluator

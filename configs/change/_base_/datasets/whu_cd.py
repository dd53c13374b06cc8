# WHU-CD building change (Ji et al. 2019), cut into 256 x 256 tiles.
# Layout:  data/WHU-CD/{train,val,test}/A/ B/ label/  (same file names in every folder;
#          change masks 0 / 255); list files, augmentation and evaluation as for LEVIR-CD.
_base_ = ['./levir_cd.py']
data_root = 'data/WHU-CD'

train_dataloader = dict(dataset=dict(data_root=data_root + '/train'))
val_dataloader = dict(dataset=dict(data_root=data_root + '/val'))
test_dataloader = dict(dataset=dict(data_root=data_root + '/test'))

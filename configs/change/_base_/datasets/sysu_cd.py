# SYSU-CD (Shi et al. 2022), 256 x 256 pairs as distributed (time1/ time2/ label/).
# Layout:  data/SYSU-CD/{train,val,test}/time1/ time2/ label/  (same file names in every folder;
#          change masks 0 / 255); list files, augmentation and evaluation as for LEVIR-CD.
_base_ = ['./levir_cd.py']
data_root = 'data/SYSU-CD'
img_dirs = ('time1', 'time2')

train_dataloader = dict(dataset=dict(data_root=data_root + '/train', img_dirs=img_dirs))
val_dataloader = dict(dataset=dict(data_root=data_root + '/val', img_dirs=img_dirs))
test_dataloader = dict(dataset=dict(data_root=data_root + '/test', img_dirs=img_dirs))

# MaIRUNet dehazing on RESIDE-6K (mixed indoor / outdoor): the ITS recipe on RESIDE-6K, test on its test split.
# Layout: data/RESIDE-6K/train/{hazy,gt}/   data/RESIDE-6K/test/{hazy,gt}/
_base_ = ['./mairunet_dehaze_its.py']

train_dataloader = dict(dataset=dict(gt_dir='data/RESIDE-6K/train/gt', lq_dir='data/RESIDE-6K/train/hazy'))
val_dataloader = dict(dataset=dict(gt_dir='data/RESIDE-6K/test/gt', lq_dir='data/RESIDE-6K/test/hazy'))
test_dataloader = val_dataloader

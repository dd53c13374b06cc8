# MaIRUNet dehazing on RESIDE OTS (outdoor): the ITS recipe on OTS (clear images in clear/), test SOTS outdoor.
# Layout: data/RESIDE/OTS/{hazy,clear}/   data/RESIDE/SOTS/outdoor/{hazy,gt}/
_base_ = ['./mairunet_dehaze_its.py']

train_dataloader = dict(dataset=dict(gt_dir='data/RESIDE/OTS/clear', lq_dir='data/RESIDE/OTS/hazy'))
val_dataloader = dict(dataset=dict(gt_dir='data/RESIDE/SOTS/outdoor/gt', lq_dir='data/RESIDE/SOTS/outdoor/hazy'))
test_dataloader = val_dataloader

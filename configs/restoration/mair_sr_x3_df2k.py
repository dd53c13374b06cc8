# MaIR classical SR x3: fine-tuned from the x2 model (the upsampler, whose shape differs, starts fresh), 192 px GT
# patches, 250k iterations halving at 125k / 200k / 225k / 237.5k; otherwise as mair_sr_x2_df2k.py.
# Layout: data/DF2K/X3/0001x3.png, data/SR/Set5/LR_bicubic/X3/baby.png; the x2 weights in checkpoints/.
# The import stays below _base_: above it, mmengine would read a lazy-import config.
_base_ = ['./mair_sr_x2_df2k.py']
from vimamba.downstream.restoration.recipes import sr_rescale  # noqa: E402

globals().update(sr_rescale(_base_, 3, 'checkpoints/MaIR_SR_x2.pth', max_iters=250000))

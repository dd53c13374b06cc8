# MaIR-T lightweight SR x4: fine-tuned from the MaIR-T x2 model (the upsampler, whose shape differs, starts
# fresh), 256 px GT patches, 250k iterations halving at 125k / 200k / 225k / 237.5k;
# otherwise as mair_light_t_x2_div2k.py.
# The import stays below _base_: above it, mmengine would read a lazy-import config.
_base_ = ['./mair_light_t_x2_div2k.py']
from vimamba.downstream.restoration.recipes import sr_rescale  # noqa: E402

globals().update(sr_rescale(_base_, 4, 'checkpoints/MaIR_T_lightSR_x2.pth', max_iters=250000))

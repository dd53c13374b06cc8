# MaIR-S lightweight SR x4: fine-tuned from the MaIR-S x2 model (the upsampler, whose shape differs, starts
# fresh), 256 px GT patches, 500k iterations as x2;
# otherwise as mair_light_s_x2_div2k.py.
# The import stays below _base_: above it, mmengine would read a lazy-import config.
_base_ = ['./mair_light_s_x2_div2k.py']
from vimamba.downstream.restoration.recipes import sr_rescale  # noqa: E402

globals().update(sr_rescale(_base_, 4, 'checkpoints/MaIR_S_lightSR_x2.pth'))

"""Layers shared across the families: mixers, blocks, norms, patch embedding, token layouts, pooling."""
from .mamba import DirectionWeights, MambaBlock, MambaMixer, init_dt_bias_, stack_directions
from .scan import pattern_scan
from .norm import MambaLayerNorm, MambaRmsNorm, at_least_fp32, fuses_add_rms_norm, get_fp32_norm_layer
from .patch_embed import PatchEmbed, check_image
from .pool import LatentAttentionPool, check_global_pool
from .tokens import TOKEN_LAYOUTS, insert_tokens, resample_pos_embed, split_tokens

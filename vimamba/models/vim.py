"""Vision Mamba (Vim) and the plain Vision Mamba backbone shared with LBVim and ShuffleMamba

Paper: `Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space Model` (ICML 2024)
    - https://arxiv.org/abs/2401.09417
Official code: https://github.com/hustvl/Vim (Apache-2.0)
A ViT-like stack of bidirectional Mamba blocks, class token in the middle; lbvim.py and shufflemamba.py reuse it.

Differences from the official code, all by design:
- Keys follow timm (`layers.{i}` -> `blocks.{i}`, `norm_f` -> `norm`), mapped by `checkpoint_filter_fn`.
- LBVim's sequence flip after every layer is a reversed scan on odd layers (same result; tokens stay in raster order).
- `dynamic_img_size` / `set_input_size` resize pos_embed around the token slots, not around index 0 as official.
"""
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import math
import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates, get_device_dtype, lecun_normal_, register_notrace_function, \
    to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..checkpoint import PretrainedMixin, prepare_pretrained, fit_state_dict, unwrap_state_dict
from ..layers import LatentAttentionPool, MambaBlock, PatchEmbed, check_global_pool, check_image, \
    get_fp32_norm_layer, insert_tokens, resample_pos_embed, split_tokens, stack_directions
from ..registry import reject_retired_kwargs
from ..scans.base import check_int, inverse_permutation

try:
    from timm.models._input import update_model_input_size
except ImportError:  # timm < 1.0.31 records no model traits
    def update_model_input_size(model, img_size, **kwargs):
        pass

__all__ = ['VisionMamba', 'checkpoint_filter_fn', 'remap_official_state_dict', 'layer_shuffle_order']


@torch.fx.wrap
@register_notrace_function
def layer_shuffle_order(x: torch.Tensor, prob: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """ShuffleMamba's layer shuffle: (index, inverse) for the batch; identity on "keep" keeps the graph static."""
    length = x.shape[1]
    identity = torch.arange(length, device=x.device)
    index = torch.randperm(length, device=x.device)
    inverse = inverse_permutation(index)
    keep = torch.rand((), device=x.device) >= prob
    return torch.where(keep, identity, index), torch.where(keep, identity, inverse)


class VisionMamba(PretrainedMixin, nn.Module):
    """Plain Vision Mamba backbone (Vim, LBVim, ShuffleMamba).

    Args:
        img_size, patch_size, stride: input size, patch kernel and stride (stride < patch_size overlaps).
        in_chans, num_classes, embed_dim, depth: input channels; classes (0: no classifier); width C; blocks.
        global_pool: 'token', 'avg', 'map' (latent attention) or ''; None: 'token' if there are extra tokens.
        d_state, d_conv, ssm_ratio, dt_rank: state size N, conv kernel, E = int(ssm_ratio * C), dt rank.
        class_token, cls_position: one class token, 'middle' (Vim) or 'head' (ShuffleMamba).
        reg_tokens, reg_reduction: Mamba-Reg interleaved registers, pooled through a Linear neck C -> C / r.
        bimamba, alternate_direction: two scan directions per layer (Vim v2); odd layers scan right to left (LBVim).
        local_window: LBMamba reverse-scan window (0: off; None: the official rule on the sequence length).
        norm_layer, norm_eps, residual_in_fp32: 'rmsnorm' or 'layernorm', computed in fp32; an fp32 residual stream.
        attn_pool_heads, shuffle_rate: attention pool heads; ShuffleMamba's last-layer shuffle probability.
        drop_rate, pos_drop_rate, drop_path_rate: head dropout, pos_embed dropout (official `drop_rate`), drop path.
        dynamic_img_size, dynamic_img_pad: any input size (pos_embed resized); zero-pad uncovered bottom / right.
        feature_source: intermediates from the 'mixer' output or the 'residual' stream (Vim-S).
        weight_init: 'vim' or 'shufflemamba' (Linear trunc_normal(.02), zero bias, zero class token).
    """

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 224,
            patch_size: Union[int, Tuple[int, int]] = 16,
            stride: Optional[Union[int, Tuple[int, int]]] = None,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: Optional[str] = None,
            embed_dim: int = 192,
            depth: int = 24,
            d_state: int = 16,
            d_conv: int = 4,
            ssm_ratio: float = 2.0,
            dt_rank: Union[int, str] = 'auto',
            class_token: bool = True,
            cls_position: str = 'middle',
            reg_tokens: int = 0,
            reg_reduction: int = 1,
            bimamba: bool = True,
            local_window: Optional[int] = 0,
            alternate_direction: bool = False,
            norm_layer: str = 'rmsnorm',
            norm_eps: float = 1e-5,
            residual_in_fp32: bool = True,
            attn_pool_heads: int = 6,
            shuffle_rate: float = 0.,
            drop_rate: float = 0.,
            pos_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            dynamic_img_size: bool = False,
            dynamic_img_pad: bool = False,
            feature_source: str = 'mixer',
            weight_init: str = 'vim',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if class_token and reg_tokens:
            raise ValueError(f"class_token and reg_tokens={reg_tokens}: use one kind of extra token")
        if cls_position not in ('middle', 'head'):
            raise ValueError(f"cls_position: expected 'middle' or 'head', got {cls_position!r}")
        if feature_source not in ('mixer', 'residual'):
            raise ValueError(f"feature_source: expected 'mixer' or 'residual', got {feature_source!r}")
        if weight_init not in ('vim', 'shufflemamba'):
            raise ValueError(f"weight_init: expected 'vim' or 'shufflemamba', got {weight_init!r}")
        check_int('VisionMamba', 'depth', depth, 1)
        if isinstance(shuffle_rate, bool) or not isinstance(shuffle_rate, (int, float)) or not 0 <= shuffle_rate <= 1:
            raise ValueError(f"shuffle_rate: expected a probability in [0, 1] (the last layer's shuffle rate), "
                             f"got {shuffle_rate!r}")
        has_tokens = class_token or reg_tokens > 0
        global_pool = ('token' if has_tokens else 'avg') if global_pool is None else global_pool
        self._check_pool(global_pool, has_tokens)
        norm_layer = get_fp32_norm_layer(norm_layer)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.depth = depth
        self.num_tokens = 1 if class_token else reg_tokens
        self.token_layout = 'none' if not has_tokens else ('interleaved' if reg_tokens else cls_position)
        self.has_class_token = class_token
        self.num_reg_tokens = reg_tokens
        self.reg_reduction = reg_reduction
        self.dynamic_img_size = dynamic_img_size
        self.feature_source = feature_source
        self.weight_init_mode = weight_init
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            img_size=img_size, patch_size=patch_size, stride=stride, in_chans=in_chans, embed_dim=embed_dim,
            strict_img_size=not dynamic_img_size, dynamic_img_pad=dynamic_img_pad, **dd)
        num_patches = self.patch_embed.num_patches
        reduction = self.patch_embed.feat_ratio()
        # A class token has a slot in pos_embed (Vim, ShuffleMamba); Mamba-Reg's registers have their own.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim, **dd)) if reg_tokens else None
        self.reg_pos_embed = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim, **dd)) if reg_tokens else None
        self.num_pos_tokens = 1 if class_token else 0
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_pos_tokens, embed_dim, **dd))
        self.pos_drop = nn.Dropout(p=pos_drop_rate)

        dpr = calculate_drop_path_rates(drop_path_rate, depth)
        block_dpr = [0.] + dpr[:-1]  # block i drops block i-1's mixer output (the official "inter_dpr")
        self.shuffle_rates = calculate_drop_path_rates(shuffle_rate, depth)
        self.blocks = nn.ModuleList([
            MambaBlock(
                embed_dim,
                norm_layer=norm_layer,
                norm_eps=norm_eps,
                drop_path=block_dpr[i],
                residual_in_fp32=residual_in_fp32,
                d_state=d_state,
                d_conv=d_conv,
                ssm_ratio=ssm_ratio,
                dt_rank=dt_rank,
                bidirectional=bimamba,
                reverse=alternate_direction and i % 2 == 1,
                local_window=local_window,
                **dd,
            )
            for i in range(depth)])
        self.feature_info = [dict(module=f'blocks.{i}', num_chs=embed_dim, reduction=reduction) for i in range(depth)]
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.norm = norm_layer(embed_dim, eps=norm_eps, **dd)

        self.attn_pool = LatentAttentionPool(embed_dim, attn_pool_heads, **dd) if global_pool == 'map' else None
        if reg_tokens and global_pool == 'token' and reg_reduction > 1:
            self.neck = nn.Linear(embed_dim, embed_dim // reg_reduction, bias=False, **dd)
            self.fc_norm = norm_layer(reg_tokens * (embed_dim // reg_reduction), eps=norm_eps, **dd)
        else:
            self.neck = nn.Identity()
            self.fc_norm = nn.Identity()
        self.head_hidden_size = self._pooled_width(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()

        self.init_weights(needs_reset=False)

    @staticmethod
    def _check_pool(global_pool: str, has_tokens: bool) -> None:
        check_global_pool('VisionMamba', global_pool, ('token', 'avg', 'map', ''))
        if global_pool == 'token' and not has_tokens:
            raise ValueError("VisionMamba: global_pool='token' needs a class token or registers; this model has "
                             "neither")

    def _pooled_width(self, global_pool: str) -> int:
        if global_pool == 'token' and self.num_reg_tokens:
            neck_width = self.neck.out_features if isinstance(self.neck, nn.Linear) else self.embed_dim
            return self.num_reg_tokens * neck_width
        return self.embed_dim

    @torch.no_grad()
    def init_weights(self, mode: str = '', needs_reset: bool = True) -> None:
        """The official init (docs/families.md#plain-stack-vim-lbvim-shufflemamba), 'vim' or 'shufflemamba'."""
        mode = mode or self.weight_init_mode
        for blk in self.blocks:
            blk.mixer.reset_parameters(needs_reset=needs_reset)
            blk.norm.reset_parameters()
        self.norm.reset_parameters()
        if mode == 'shufflemamba':
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            for blk in self.blocks:  # x_proj and dt_proj are Linear layers in the official code
                for proj in (blk.mixer.x_proj, blk.mixer.dt_proj):
                    trunc_normal_(proj.weight, std=.02)
                    if proj.bias is not None:
                        nn.init.zeros_(proj.bias)
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            if mode == 'shufflemamba':
                nn.init.zeros_(self.cls_token)
            else:
                trunc_normal_(self.cls_token, std=.02)
        if self.reg_token is not None:
            trunc_normal_(self.reg_token, std=.02)
            trunc_normal_(self.reg_pos_embed, std=.02)
        if self.attn_pool is not None:
            self.attn_pool.init_weights()
        if isinstance(self.neck, nn.Linear):
            trunc_normal_(self.neck.weight, std=.02)
        if hasattr(self.fc_norm, 'reset_parameters'):
            self.fc_norm.reset_parameters()
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=.02)
            nn.init.zeros_(self.head.bias)
        for blk in self.blocks:
            mixer = blk.mixer
            # mamba-ssm's _init_weights zeroes every Linear bias not marked _no_reinit: only dt_proj.bias is.
            nn.init.zeros_(mixer.dt_proj.bias[1:])
            # GPT-2 style rescale of the residual branch's last projection (one residual per layer).
            nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))
            mixer.out_proj.weight.div_(math.sqrt(self.depth))

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        # A_log is 2-D, so timm's 1-D rule does not exempt it; mamba-ssm marks A and D as no-decay.
        names = {'pos_embed', 'blocks.*.mixer.A_log', 'blocks.*.mixer.D'}
        if self.cls_token is not None:
            names.add('cls_token')
        if self.reg_token is not None:
            names.update({'reg_token', 'reg_pos_embed'})
        return names

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^cls_token|^reg_token|^reg_pos_embed|^pos_embed|^patch_embed',
            blocks=[(r'^blocks\.(\d+)', None), (r'^norm', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is not None:
            self._check_pool(global_pool, self.num_tokens > 0)
            if global_pool == 'map' and self.attn_pool is None:
                raise ValueError("VisionMamba: global_pool='map' needs the attention pool built at construction")
            if global_pool != 'map':
                self.attn_pool = None
            if global_pool != 'token':
                self.neck, self.fc_norm = nn.Identity(), nn.Identity()
            self.global_pool = global_pool
            self.head_hidden_size = self._pooled_width(global_pool)
        self.head = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head.train(self.training)

    @torch.jit.ignore
    def set_input_size(
            self,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,
            patch_size: Optional[Union[int, Tuple[int, int]]] = None,
    ) -> None:
        """Change the input size, resizing the position embedding around its token slots."""
        if patch_size is not None and to_2tuple(patch_size) != self.patch_embed.patch_size:
            raise ValueError(f"patch_size: changing the patch size ({self.patch_embed.patch_size} -> "
                             f"{to_2tuple(patch_size)}) is not supported")
        if img_size is None:
            return
        prev_grid = self.patch_embed.grid_size
        self.patch_embed.set_input_size(img_size)
        if self.patch_embed.grid_size != prev_grid:
            self.pos_embed = nn.Parameter(
                self._resize_pos_embed(self.pos_embed.detach(), self.patch_embed.grid_size, prev_grid),
                requires_grad=self.pos_embed.requires_grad)
        update_model_input_size(self, self.patch_embed.img_size)

    def _resize_pos_embed(self, pos_embed: torch.Tensor, new_size, old_size) -> torch.Tensor:
        layout = self.token_layout if self.num_pos_tokens else 'none'
        return resample_pos_embed(pos_embed, new_size, old_size, layout=layout, num_tokens=self.num_pos_tokens)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> token sequence with the extra tokens in place and the position embedding added."""
        x = check_image(x, self.in_chans, self.patch_embed.proj.weight, type(self).__name__)
        img_size = x.shape[-2:]
        x = self.patch_embed(x)
        pos_embed = self.pos_embed
        if self.dynamic_img_size:
            grid = self.patch_embed.dynamic_feat_size(img_size)
            pos_embed = self._resize_pos_embed(pos_embed, grid, self.patch_embed.grid_size)
        batch = x.shape[0]
        if self.cls_token is not None:
            # The class token's pos_embed slot is where the token is, so insert first, then add.
            x = insert_tokens(x, self.cls_token.expand(batch, -1, -1), self.token_layout)
            return self.pos_drop(x + pos_embed)
        x = self.pos_drop(x + pos_embed)
        if self.reg_token is not None:
            x = insert_tokens(x, (self.reg_token + self.reg_pos_embed).expand(batch, -1, -1), self.token_layout)
        return x

    def _block(
            self,
            i: int,
            blk: nn.Module,
            hidden: torch.Tensor,
            residual: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        shuffle = self.training and self.shuffle_rates[i] > 0
        if shuffle:
            # The mixer sees the tokens permuted; add and norm are token-wise, so both streams go together.
            index, inverse = layer_shuffle_order(hidden, self.shuffle_rates[i])
            hidden = hidden[:, index]
            residual = None if residual is None else residual[:, index]
        if self.grad_checkpointing and not torch.jit.is_scripting():
            hidden, residual = checkpoint(blk, hidden, residual)
        else:
            hidden, residual = blk(hidden, residual)
        if shuffle:
            hidden, residual = hidden[:, inverse], residual[:, inverse]
        return hidden, residual

    def _final_norm(self, hidden: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        x = hidden if residual is None else residual + self.drop_path(hidden)
        return self.norm(x).to(hidden.dtype)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features that returns intermediates.

        Args:
            x: Input image tensor
            indices: Take last n blocks if int, all if None, select matching indices if sequence
            norm: Apply the final norm layer to all intermediates
            stop_early: Stop iterating over blocks when last desired intermediate hit
            output_fmt: 'NCHW' maps or 'NLC' tokens, in raster order without class / register tokens
            intermediates_only: Only return intermediate features
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt: expected 'NCHW' or 'NLC', got {output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        height, width = x.shape[-2:]
        hidden, residual = self._embed(x), None
        blocks = self.blocks if torch.jit.is_scripting() or not stop_early else self.blocks[:max_index + 1]
        for i, blk in enumerate(blocks):
            hidden, residual = self._block(i, blk, hidden, residual)
            if i in take_indices:
                feat = hidden if self.feature_source == 'mixer' else residual + hidden
                feat = self.norm(feat) if norm else feat
                intermediates.append(split_tokens(feat.to(hidden.dtype), self.token_layout, self.num_tokens)[0])
        if output_fmt == 'NCHW':
            grid_h, grid_w = self.patch_embed.dynamic_feat_size((height, width))
            intermediates = [y.reshape(y.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2).contiguous()
                             for y in intermediates]
        if intermediates_only:
            return intermediates
        return self._final_norm(hidden, residual), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Prune layers not required for specified intermediates."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        hidden, residual = self._embed(x), None
        for i, blk in enumerate(self.blocks):
            hidden, residual = self._block(i, blk, hidden, residual)
        return self._final_norm(hidden, residual)

    def pool(self, x: torch.Tensor, pool_type: Optional[str] = None) -> torch.Tensor:
        pool_type = self.global_pool if pool_type is None else pool_type
        if not pool_type:
            return x
        patches, tokens = split_tokens(x, self.token_layout, self.num_tokens)
        if pool_type == 'map':
            return self.attn_pool(patches)
        if pool_type == 'token':
            if self.num_reg_tokens:
                return self.neck(tokens).flatten(1)
            return tokens[:, 0]
        return patches.mean(dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


def remap_official_state_dict(state_dict: Dict[str, Any], model: VisionMamba) -> Dict[str, torch.Tensor]:
    """Official Vim / LBVim / ShuffleMamba names -> ours (a checkpoint's 'model', RoPE dropped), pos_embed resized."""
    state_dict = unwrap_state_dict(state_dict)
    official = any(k.startswith(('layers.', 'norm_f.')) for k in state_dict)
    out = {}
    for k, v in state_dict.items():
        if official:
            if k.startswith('rope.'):
                continue
            if k.startswith('layers.'):
                k = 'blocks.' + k[len('layers.'):]
            elif k.startswith('norm_f.'):
                k = 'norm.' + k[len('norm_f.'):]
            elif k.startswith('head.0.'):  # LBVim-528: Sequential(attention pool, classifier)
                k = 'attn_pool.' + k[len('head.0.'):].replace('post_norm.', 'norm.')
            elif k.startswith('head.1.'):
                k = 'head.' + k[len('head.1.'):]
            elif k.startswith('norm_neck.'):
                k = 'fc_norm.' + k[len('norm_neck.'):]
            elif model.reg_token is not None and k == 'cls_token':
                k = 'reg_token'
            elif k == 'pos_embed_cls':
                k = 'reg_pos_embed'
        if k == 'pos_embed' and v.shape != model.pos_embed.shape:
            try:
                v = model._resize_pos_embed(v, model.patch_embed.grid_size, None)
            except ValueError:
                pass  # not a square grid with this model's token slots: the strict load reports the shape
        out[k] = v
    for i, blk in enumerate(model.blocks):
        stack_directions(out, f'blocks.{i}.mixer.', blk.mixer)
    return out


def checkpoint_filter_fn(
        state_dict: Dict[str, Any], model: VisionMamba, strict: bool = True) -> Dict[str, torch.Tensor]:
    """Load official Vim checkpoints (hustvl/Vim `layers.*`, `norm_f`, middle-cls pos_embed) into `VisionMamba`."""
    return fit_state_dict(remap_official_state_dict(state_dict, model), model, strict)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': None,
        'crop_pct': 0.875,
        'interpolation': 'bicubic',
        'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj',
        'classifier': 'head',
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:2401.09417',
        'paper_name': 'Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space Model',
        'origin_url': 'https://github.com/hustvl/Vim',
        'custom_load': 'hf',  # every source (file, url, Hugging Face) is read by vimamba.checkpoint
        **kwargs,
    }


def _official(repo: str, filename: str, top1: float) -> Dict[str, Any]:
    return dict(hf_hub_id=f'hustvl/{repo}', hf_hub_filename=filename, notes=(f'ImageNet-1k top-1 {top1}',))


default_cfgs = generate_default_cfgs({
    'vim_tiny_patch16_224.in1k': _cfg(**_official('Vim-tiny-midclstok', 'vim_t_midclstok_76p1acc.pth', 76.1)),
    'vim_tiny_patch16_stride8_224.in1k': _cfg(
        **_official('Vim-tiny-midclstok', 'vim_t_midclstok_ft_78p3acc.pth', 78.3)),
    'vim_small_patch16_224.in1k': _cfg(**_official('Vim-small-midclstok', 'vim_s_midclstok_80p5acc.pth', 80.5)),
    'vim_small_patch16_stride8_224.in1k': _cfg(
        **_official('Vim-small-midclstok', 'vim_s_midclstok_ft_81p6acc.pth', 81.6)),
    'vim_base_patch16_224.in1k': _cfg(**_official('Vim-base-midclstok', 'vim_b_midclstok_81p9acc.pth', 81.9)),
    'test_vim': _cfg(input_size=(3, 64, 64), license=None),
})


RETIRED_KWARGS = {'expand': 'pass ssm_ratio (inner width int(ssm_ratio * embed_dim), as every family spells it)'}


def build_vim_variant(
        variant: str, pretrained: bool, filter_fn: Callable[..., Dict[str, torch.Tensor]], **kwargs) -> VisionMamba:
    """Build a `VisionMamba` variant, reading official checkpoints through `filter_fn`."""
    reject_retired_kwargs(variant, kwargs, RETIRED_KWARGS)
    out_indices = kwargs.pop('out_indices', 3)
    prepare_pretrained(variant, pretrained, kwargs)
    return build_model_with_cfg(
        VisionMamba,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _create_vim(variant: str, pretrained: bool = False, **kwargs) -> VisionMamba:
    return build_vim_variant(variant, pretrained, checkpoint_filter_fn, **kwargs)


@register_model
def vim_tiny_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Vim-Ti: 7.15M params, 76.1 top-1."""
    model_args = dict(patch_size=16, embed_dim=192, depth=24)
    return _create_vim('vim_tiny_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def vim_tiny_patch16_stride8_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Vim-Ti+: 16x16 patches every 8 px (729 patches + 1 cls), 7.25M params, 78.3 top-1."""
    model_args = dict(patch_size=16, stride=8, embed_dim=192, depth=24)
    return _create_vim('vim_tiny_patch16_stride8_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def vim_small_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Vim-S: 25.80M params, 80.5 top-1."""
    model_args = dict(patch_size=16, embed_dim=384, depth=24)
    return _create_vim('vim_small_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def vim_small_patch16_stride8_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Vim-S+: 26.00M params, 81.6 top-1."""
    model_args = dict(patch_size=16, stride=8, embed_dim=384, depth=24)
    return _create_vim('vim_small_patch16_stride8_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def vim_base_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Vim-B: 97.60M params, 81.9 top-1."""
    model_args = dict(patch_size=16, embed_dim=768, depth=24)
    return _create_vim('vim_base_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def test_vim(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Tiny Vim for tests: overlapping patches (stride 8) and the middle cls token, 4 blocks."""
    model_args = dict(img_size=64, patch_size=16, stride=8, embed_dim=32, depth=4, d_state=8)
    return _create_vim('test_vim', pretrained=pretrained, **dict(model_args, **kwargs))

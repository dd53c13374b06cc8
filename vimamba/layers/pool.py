"""Classification-head pooling: the `global_pool` check and latent-query attention pooling (LBVim-528)."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_, trunc_normal_tf_

__all__ = ['LatentAttentionPool', 'check_global_pool']


def check_global_pool(owner: str, global_pool: str, accepted: Sequence[str], num_classes: Optional[int] = None) -> str:
    """`global_pool` if in `accepted`, else ValueError; with `num_classes` given, '' also needs num_classes=0."""
    if global_pool not in accepted:
        raise ValueError(f"{owner}: global_pool={global_pool!r}; accepted: {', '.join(map(repr, accepted))}")
    if num_classes is not None and not global_pool and num_classes:
        raise ValueError(f"{owner}: global_pool='' needs num_classes=0, got num_classes={num_classes}")
    return global_pool


class LatentAttentionPool(nn.Module):
    """Latent-query attention + LayerNorm, no q / out projection or MLP (LBMamba's "att_qkv_onlyatt_pnorm_nomapq")."""

    def __init__(self, dim: int, num_heads: int = 6, qkv_bias: bool = True, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f"num_heads: {num_heads} does not divide dim {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim, **dd))
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.norm = nn.LayerNorm(dim, eps=eps, **dd)
        self.init_weights()

    def init_weights(self) -> None:
        trunc_normal_tf_(self.latent, std=self.latent.shape[-1] ** -0.5)
        trunc_normal_(self.kv.weight, std=.02)
        if self.kv.bias is not None:
            nn.init.zeros_(self.kv.bias)
        self.norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q = self.latent.expand(batch, -1, -1).reshape(batch, 1, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, head_dim)
        return self.norm(x.transpose(1, 2).reshape(batch, dim))

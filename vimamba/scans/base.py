"""What every scan pattern returns: the gather order of each direction and its inverse."""
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class ScanOrder:
    """Token visiting order of K scan directions over a sequence of L tokens.

    `index[k, t]` is the token that direction k visits at step t; `inverse[k, index[k, t]] == t`.
    `local_window` is the LBMamba window the op should use with this order (0: plain scan).
    The selective-scan op reads through `index` and writes back in token order, so nobody materialises
    permuted copies of the activations.
    """
    index: torch.Tensor
    inverse: torch.Tensor
    local_window: int = 0

    @property
    def num_directions(self) -> int:
        return self.index.shape[0]

    @property
    def length(self) -> int:
        return self.index.shape[1]

    @classmethod
    def from_index(cls, index: torch.Tensor, local_window: int = 0) -> "ScanOrder":
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() == 1:
            index = index[None]
        inverse = torch.empty_like(index)
        steps = torch.arange(index.shape[1], device=index.device).expand_as(index)
        inverse.scatter_(1, index, steps)
        return cls(index=index, inverse=inverse, local_window=local_window)

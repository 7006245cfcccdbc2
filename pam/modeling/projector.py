"""Projectors from perceiver outputs to the LLM's width: Linear, GELU, Linear.

An ``nn.Sequential`` so the parameter names (``0.*``, ``2.*``) match the released weights.
"""

from __future__ import annotations

from torch import nn


class Projector(nn.Sequential):
    def __init__(self, *, in_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.in_dim = in_dim
        self.out_dim = out_dim

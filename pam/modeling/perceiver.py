"""Semantic Perceiver: turns SAM 2's decoder outputs into LLM-ready region tokens.

Queries are SAM 2's two mask tokens followed by ``num_semantic_tokens`` learned tokens; keys are
the post-two-way-transformer image embedding with a random Fourier positional encoding. The blocks
are SAM's two-way transformer, subclassed from the ``sam2`` package: per block self-attention,
token-to-image cross-attention, MLP, image-to-token cross-attention; then a final token-to-image
attention and LayerNorm.

Outputs: the semantic tokens (the mask-token queries are dropped) and the updated image keys,
pixel-shuffled into fewer, wider tokens: 2x2 for a still image or a video's first frame, 4x4 then
``Linear(4096 -> 1024)`` for later frames.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PerceiverConfig
from .sam2_build import import_sam2

import_sam2()
from sam2.modeling.position_encoding import PositionEmbeddingRandom  # noqa: E402
from sam2.modeling.sam.transformer import TwoWayTransformer  # noqa: E402


def pixel_shuffle_tokens(tokens: torch.Tensor, height: int, width: int, factor: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, H*W / f^2, C * f^2), with the released PAM weights' element order.

    The released weights were trained with this exact layout: the token-major keys are read as a
    (B, C, H, W) buffer, regrouped along width then height, and flattened back to tokens. The
    layout matters only for loading those weights; any fixed bijection trains equally well.
    """
    b, n, c = tokens.shape
    if n != height * width or height % factor or width % factor:
        raise ValueError(f"cannot pixel-shuffle {n} tokens as {height}x{width} by {factor}")
    if factor == 1:
        return tokens
    x = tokens.reshape(b, c, height, width)  # reinterpret the buffer, as the released model does
    x = x.reshape(b, width, height // factor, c * factor).permute(0, 2, 1, 3)
    x = x.reshape(b, height // factor, width // factor, c * factor * factor).permute(0, 3, 1, 2)
    return x.flatten(2).transpose(1, 2)


class SemanticPerceiver(TwoWayTransformer):
    """SAM's two-way transformer (subclassed from sam2) with learned semantic queries, its own
    random Fourier positional encoding for the image keys, and pixel-shuffled image outputs."""

    def __init__(self, *, cfg: PerceiverConfig):
        super().__init__(
            depth=cfg.depth,
            embedding_dim=cfg.embed_dim,
            num_heads=cfg.num_heads,
            mlp_dim=cfg.mlp_dim,
            activation=nn.ReLU,
            attention_downsample_rate=cfg.attention_downsample_rate,
        )
        self.cfg = cfg
        d = cfg.embed_dim
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        self.semantic_tokens = nn.Embedding(cfg.num_semantic_tokens, d) if cfg.num_semantic_tokens else None
        self.frame_proj = nn.Linear(d * cfg.frame_shuffle**2, d * cfg.image_shuffle**2)

    def forward(self, image_embedding: torch.Tensor, mask_tokens: torch.Tensor, *, first_frame: bool = True):
        """``image_embedding`` (B, 256, E, E) and ``mask_tokens`` (B, M, 256) ->
        semantic tokens (B, S, 256) and image tokens (B, N, 256 * image_shuffle^2).

        As in SAM's decoder, the queries' positional encoding is the initial queries themselves.
        """
        b, _, h, w = image_embedding.shape
        dtype = self.norm_final_attn.weight.dtype
        queries = mask_tokens.to(dtype)
        if self.semantic_tokens is not None:
            # call the embedding module (not .weight) so ZeRO-3 gathers it
            ids = torch.arange(self.cfg.num_semantic_tokens, device=queries.device)
            queries = torch.cat([queries, self.semantic_tokens(ids).to(dtype).unsqueeze(0).expand(b, -1, -1)], dim=1)
        image_pe = self.pe_layer((h, w)).unsqueeze(0).to(dtype)
        queries, keys = super().forward(image_embedding.to(dtype), image_pe, queries)
        semantic = queries[:, mask_tokens.shape[1] :]
        if first_frame:
            image_tokens = pixel_shuffle_tokens(keys, h, w, self.cfg.image_shuffle)
        else:
            image_tokens = self.frame_proj(pixel_shuffle_tokens(keys, h, w, self.cfg.frame_shuffle))
        return semantic, image_tokens

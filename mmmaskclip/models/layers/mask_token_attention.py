# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Attention of mask class tokens inside one CLIP block (paper Eq. 1-2).

:class:`MaskTokenAttention` is the hook point of the visual encoder: every
block of :class:`~mmmaskclip.models.backbones.MaskCLIPVisualEncoder` calls
one such layer for its mask class tokens. Relative Mask Attention (Eq. 3-5)
is a drop-in subclass that may also return refined mask logits.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from .attention_mask import mask_token_attention_mask


@dataclass
class MaskTokenBlockInputs:
    """What a block hands to its mask-token attention layer.

    Shapes: ``B`` images, ``h`` heads, ``d`` head dim, ``W`` width,
    ``M`` mask tokens, ``N`` patches, ``L = 1 + N`` CLIP tokens.

    Attributes:
        q_mask (Tensor): queries of the mask tokens ``(B, h, M, d)``, after
            the in-projection (bias included), not yet scaled.
        k (Tensor): keys of the CLIP tokens ``(B, h, L, d)``.
        v (Tensor): values of the CLIP tokens ``(B, h, L, d)``.
        clip_tokens_normed (Tensor): ``ln_1`` output of the CLIP tokens
            ``(B, L, W)`` (what the official φ_Km reads).
        mask_logits (Tensor): current mask logits ``(B, M, H, W)`` at the
            encoder's input resolution.
        coverage (Tensor): bool ``(B, M, N)``, patches covered by each mask.
        grid_size (tuple[int, int]): patch grid ``(H / ph, W / pw)``.
        patch_size (tuple[int, int]): ViT patch size ``(ph, pw)``.
        block_index (int): 0-based index of the block.
        attention_bias (Tensor, optional): ``(B, 1, M, L)`` additive float
            mask of :func:`mask_token_attention_mask` (0 allowed, ``-inf``
            not) in the queries' dtype, shared by the blocks while the masks
            stay the same; None: built from ``coverage``.
    """
    q_mask: Tensor
    k: Tensor
    v: Tensor
    clip_tokens_normed: Tensor
    mask_logits: Tensor
    coverage: Tensor
    grid_size: Tuple[int, int]
    patch_size: Tuple[int, int]
    block_index: int
    attention_bias: Optional[Tensor] = None


@MODELS.register_module()
class MaskTokenAttention(BaseModule):
    """Plain mask-class-token attention (paper Eq. 1-2), no parameters.

    Mask token ``i`` attends the class token and the patches its mask covers
    with CLIP's own attention weights; it attends no mask token (not even
    itself). An empty mask attends the class token only, so outputs stay
    finite.

    Args:
        embed_dims (int): CLIP width ``W`` (filled in by the encoder).
        num_heads (int): attention heads ``h`` (filled in by the encoder).
        patch_size (tuple[int, int]): ViT patch size (filled in likewise).
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 patch_size: Tuple[int, int],
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.patch_size = tuple(patch_size)

    def forward(self, inputs: MaskTokenBlockInputs) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend.

        Args:
            inputs (MaskTokenBlockInputs): the block's tensors.

        Returns:
            tuple[Tensor, Tensor | None]: attention output of the mask tokens
            ``(B, h, M, d)`` (before the out-projection) and refined mask
            logits ``(B, M, H, W)``, or None when masks are unchanged.
        """
        allowed = inputs.attention_bias
        if allowed is None or allowed.dtype != inputs.q_mask.dtype:
            allowed = mask_token_attention_mask(inputs.coverage)
        out = F.scaled_dot_product_attention(inputs.q_mask, inputs.k, inputs.v, attn_mask=allowed)
        return out, None

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The attention mask of mask class tokens (paper Eq. 1-2).

Conventions: every boolean mask here is True where attention is
**allowed**, as in :func:`torch.nn.functional.scaled_dot_product_attention`
(the paper's Eq. 1 writes the opposite, True = masked out).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def mask_patch_coverage(mask_logits: Tensor, patch_size: Tuple[int, int]) -> Tensor:
    """Which patches each mask covers (paper Eq. 2).

    A mask covers patch ``j`` iff at least one of its pixels inside the
    patch has a logit ``>= 0`` (a logit of exactly 0 counts as covered).

    Args:
        mask_logits (Tensor): ``(B, M, H, W)`` logits at the encoder's input
            resolution; ``H`` and ``W`` are multiples of the patch size.
        patch_size (tuple[int, int]): ViT patch height and width.

    Returns:
        Tensor: bool ``(B, M, N)`` with ``N = H/ph * W/pw`` in row-major
        patch order (the order of CLIP's patch tokens).
    """
    b, m = mask_logits.shape[:2]
    if m == 0:
        h, w = mask_logits.shape[-2:]
        return mask_logits.new_zeros(
            b, 0, (h // patch_size[0]) * (w // patch_size[1]), dtype=torch.bool)
    # the largest logit of a patch is >= 0 iff one of its pixels is covered
    # (pooling the logits themselves needs no full-resolution temporary)
    pooled = F.max_pool2d(
        mask_logits.detach().flatten(0, 1), kernel_size=patch_size, stride=patch_size)
    return pooled.view(b, m, -1) >= 0


def mask_token_attention_mask(coverage: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """Boolean attention mask of mask class tokens over the CLIP tokens.

    Mask token ``i`` attends the class token always and patch ``j`` iff
    ``coverage[:, i, j]``; mask tokens never attend mask tokens, so the
    key axis holds the CLIP tokens only (the rows of Eq. 1 for mask tokens,
    without its all-False ``M x M`` block).

    Args:
        coverage (Tensor): bool ``(B, M, N)`` from :func:`mask_patch_coverage`.
        num_prefix_tokens (int): tokens before the patches (the class token).

    Returns:
        Tensor: bool ``(B, 1, M, num_prefix_tokens + N)``, True = may attend;
        broadcasts over attention heads.
    """
    prefix = coverage.new_ones(*coverage.shape[:2], num_prefix_tokens)
    return torch.cat([prefix, coverage], dim=2).unsqueeze(1)


def mask_token_attention_bias(coverage: Tensor,
                              dtype: torch.dtype,
                              num_prefix_tokens: int = 1) -> Tensor:
    """:func:`mask_token_attention_mask` as an additive float mask.

    Args:
        coverage (Tensor): bool ``(B, M, N)``.
        dtype (torch.dtype): the attention queries' dtype.
        num_prefix_tokens (int): tokens before the patches.

    Returns:
        Tensor: ``(B, 1, M, num_prefix_tokens + N)``: 0 where attention is
        allowed, ``-inf`` elsewhere.
    """
    allowed = mask_token_attention_mask(coverage, num_prefix_tokens)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=coverage.device)
    return bias.masked_fill_(~allowed, float('-inf'))

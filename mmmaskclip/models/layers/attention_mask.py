# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The attention mask of mask class tokens (paper Eq. 1-2).

Conventions: every boolean mask here is True where attention is
**allowed**, as in :func:`torch.nn.functional.scaled_dot_product_attention`
(the paper's Eq. 1 writes the opposite, True = masked out).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

#: Logit given to padded (non-existent) mask slots: binarises to "empty".
PAD_MASK_LOGIT = -1e4


def resize_mask_logits(mask_logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinearly resize mask logits ``(B, M, h, w)`` to ``(B, M, *size)``."""
    if tuple(mask_logits.shape[-2:]) == tuple(size):
        return mask_logits
    if mask_logits.shape[1] == 0:
        return mask_logits.new_zeros(*mask_logits.shape[:2], *size)
    return F.interpolate(mask_logits, size=size, mode='bilinear', align_corners=False)


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
        return mask_logits.new_zeros(b, 0, (h // patch_size[0]) * (w // patch_size[1]),
                                     dtype=torch.bool)
    # the largest logit of a patch is >= 0 iff one of its pixels is covered
    # (pooling the logits themselves needs no full-resolution temporary)
    pooled = F.max_pool2d(mask_logits.detach().flatten(0, 1), kernel_size=patch_size,
                          stride=patch_size)
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


def pad_mask_list(masks: Sequence[Tensor], size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Resize per-image mask logits to ``size`` and pad them to one tensor.

    Args:
        masks (Sequence[Tensor]): ``B`` tensors ``(M_i, h_i, w_i)``; each may
            have its own count and resolution. Boolean masks are turned
            into logits (+1 inside, -1 outside).
        size (tuple[int, int]): output resolution ``(H, W)``.

    Returns:
        tuple[Tensor, Tensor]: logits ``(B, max M_i, H, W)`` whose padded slots
        hold :data:`PAD_MASK_LOGIT`, and bool validity ``(B, max M_i)``.
    """
    if len(masks) == 0:
        raise ValueError('Got an empty list of per-image masks.')
    num = max(int(m.shape[0]) for m in masks)
    ref = masks[0]
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    out = ref.new_full((len(masks), num, *size), PAD_MASK_LOGIT, dtype=dtype)
    valid = torch.zeros(len(masks), num, dtype=torch.bool, device=ref.device)
    for i, m in enumerate(masks):
        if m.dim() != 3:
            raise ValueError(f'Masks of image {i} must be (M, h, w), got {tuple(m.shape)}.')
        m = as_mask_logits(m).to(dtype)
        if m.shape[0]:
            out[i, :m.shape[0]] = resize_mask_logits(m[None], size)[0]
        valid[i, :m.shape[0]] = True
    return out, valid


def as_mask_logits(masks: Tensor) -> Tensor:
    """Boolean/0-1 integer masks to logits (+1 / -1); float logits unchanged."""
    if masks.dtype == torch.bool or not masks.is_floating_point():
        return masks.bool().float() * 2 - 1
    return masks


def prepare_mask_logits(mask_logits: Union[Tensor, List[Tensor]], size: Tuple[int, int],
                        valid: Optional[Tensor] = None,
                        batch_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Normalise the mask input of the encoders.

    Args:
        mask_logits (Tensor | list[Tensor]): ``(B, M, h, w)`` logits (or
            boolean masks) at any resolution, or a list of ``B`` tensors
            ``(M_i, h_i, w_i)`` with per-image counts.
        size (tuple[int, int]): the encoder's input resolution ``(H, W)``.
        valid (Tensor, optional): bool ``(B, M)``; False marks padded slots
            of a tensor input. Ignored for list input.
        batch_size (int, optional): expected ``B``, checked when given.

    Returns:
        tuple[Tensor, Tensor]: logits ``(B, M, H, W)`` (invalid slots set to
        :data:`PAD_MASK_LOGIT`) and validity ``(B, M)``.
    """
    if isinstance(mask_logits, (list, tuple)):
        logits, valid = pad_mask_list(mask_logits, size)
    else:
        if mask_logits.dim() != 4:
            raise ValueError('mask_logits must be (B, M, h, w) or a list of (M, h, w) '
                             f'tensors, got shape {tuple(mask_logits.shape)}.')
        logits = resize_mask_logits(as_mask_logits(mask_logits).float(), size)
        if valid is None:
            valid = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        elif tuple(valid.shape) != tuple(logits.shape[:2]):
            raise ValueError(f'valid must be (B, M) = {tuple(logits.shape[:2])}, '
                             f'got {tuple(valid.shape)}.')
        else:
            valid = valid.bool()
            logits = logits.masked_fill(~valid[..., None, None], PAD_MASK_LOGIT)
    if batch_size is not None and logits.shape[0] != batch_size:
        raise ValueError(f'Got masks for {logits.shape[0]} images but {batch_size} images.')
    if not torch.isfinite(logits).all():
        raise ValueError('mask_logits contain NaN or infinite values.')
    return logits, valid

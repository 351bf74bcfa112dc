# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mask logits as tensors: the one home of their conventions.

Masks travel as float logits (``>= 0`` = inside); boolean or 0/1 integer
masks become ``+1`` / ``-1``. Per-image mask lists become one padded batch
``(B, M, H, W)`` whose padded slots hold :data:`PAD_MASK_LOGIT` (empty
everywhere) and are ``False`` in the validity ``(B, M)``. Resizing is
bilinear (``align_corners=False``), antialiased only where a side shrinks
by more than 2x (milder factors stay plain bilinear, which e.g. inverts
mmdet's nearest upsampling by 2 exactly).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

#: Logit of padded (non-existent) mask slots and of padding: binarises to "empty".
PAD_MASK_LOGIT = -1e4


def as_mask_logits(masks: Tensor) -> Tensor:
    """Boolean/0-1 integer masks to logits (+1 / -1); float logits unchanged."""
    if masks.dtype == torch.bool or not masks.is_floating_point():
        return masks.bool().float() * 2 - 1
    return masks


def shrinks_much(in_size: Sequence[int], out_size: Sequence[int]) -> bool:
    """Whether resizing ``(h, w)`` to ``(H, W)`` shrinks a side by more than
    2x: the one rule for antialiasing mask logits (both sides then)."""
    return in_size[0] > 2 * out_size[0] or in_size[1] > 2 * out_size[1]


def resize_mask_logits(logits: Tensor, size: Sequence[int], antialias: bool = True) -> Tensor:
    """Bilinear resize of ``(..., h, w)`` logits to ``(..., *size)``.

    Args:
        logits (Tensor): any leading dimensions (``(M, h, w)``, ``(B, M, h, w)``).
        size (Sequence[int]): ``(H, W)``.
        antialias (bool): antialias where a side shrinks by more than 2x.

    Returns:
        Tensor: ``(..., H, W)``; ``logits`` itself when the size is unchanged.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    lead = logits.shape[:-2]
    if logits.numel() == 0:
        return logits.new_zeros(*lead, *size)
    flat = logits.reshape(-1, 1, *logits.shape[-2:])
    out = F.interpolate(
        flat,
        size=size,
        mode='bilinear',
        align_corners=False,
        antialias=antialias and shrinks_much(logits.shape[-2:], size))
    return out.view(*lead, *size)


def stack_mask_logits(per_image: Sequence[Tensor],
                      size: Optional[Sequence[int]] = None,
                      scores: Optional[Sequence[Optional[Tensor]]] = None,
                      antialias: bool = True) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Per-image masks -> one padded batch.

    Args:
        per_image (Sequence[Tensor]): ``B`` tensors ``(M_i, h_i, w_i)`` of
            logits or boolean masks; each may have its own count.
        size (Sequence[int], optional): resize every image's masks to
            ``(H, W)`` (see :func:`resize_mask_logits`); by default they must
            share the size of the first.
        scores (Sequence[Tensor | None], optional): per image ``(M_i,)``
            scores (e.g. objectness), stacked only if every image has them.
        antialias (bool): see :func:`resize_mask_logits`.

    Returns:
        tuple[Tensor, Tensor, Tensor | None]: logits ``(B, M, H, W)`` with
        ``M = max(1, max M_i)`` (padded slots :data:`PAD_MASK_LOGIT`), bool
        validity ``(B, M)`` and scores ``(B, M)`` (0 in padded slots) or None.
    """
    if len(per_image) == 0:
        raise ValueError('Got an empty list of per-image masks.')
    for i, masks in enumerate(per_image):
        if masks.dim() != 3:
            raise ValueError(f'Masks of image {i} must be (M, h, w), got {tuple(masks.shape)}.')
    ref = per_image[0]
    size = tuple(ref.shape[-2:]) if size is None else (int(size[0]), int(size[1]))
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    num = max(1, max(int(m.shape[0]) for m in per_image))
    out = ref.new_full((len(per_image), num, *size), PAD_MASK_LOGIT, dtype=dtype)
    valid = torch.zeros(len(per_image), num, dtype=torch.bool, device=ref.device)
    with_scores = scores is not None and all(s is not None for s in scores)
    stacked = out.new_zeros(len(per_image), num) if with_scores else None
    for i, masks in enumerate(per_image):
        count = masks.shape[0]
        if count:
            out[i, :count] = resize_mask_logits(as_mask_logits(masks).to(dtype), size, antialias)
        valid[i, :count] = True
        if with_scores:
            stacked[i, :count] = scores[i].to(stacked)
    return out, valid, stacked


def prepare_mask_logits(mask_logits: Union[Tensor, List[Tensor]],
                        size: Tuple[int, int],
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
        logits, valid, _ = stack_mask_logits(mask_logits, size, antialias=False)
    else:
        if mask_logits.dim() != 4:
            raise ValueError('mask_logits must be (B, M, h, w) or a list of (M, h, w) '
                             f'tensors, got shape {tuple(mask_logits.shape)}.')
        logits = resize_mask_logits(as_mask_logits(mask_logits).float(), size, antialias=False)
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

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mask geometry between the original image and the padded batch.

A pipeline may resize and flip an image (not crop: the metainfo does not
record crops); masks of that image live in three frames: the original image
(``ori_shape``), the transformed image (``img_shape``) and the padded batch
(``batch_input_shape``). These functions move mask logits between them, once,
for every proposal source and for the outputs.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import PAD_MASK_LOGIT


def _shape2(shape: Sequence[int]) -> Tuple[int, int]:
    return int(shape[0]), int(shape[1])


def flip_logits(logits: Tensor, direction: Optional[str]) -> Tensor:
    """Flip ``(..., H, W)`` as mmdet's ``RandomFlip`` flips the image."""
    dims = {'horizontal': (-1, ), 'vertical': (-2, ), 'diagonal': (-2, -1)}
    if direction not in dims:
        raise ValueError(f'Unknown flip direction {direction!r}.')
    return logits.flip(dims[direction])


def resize_logits(logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(M, h, w)`` logits to ``(M, *size)``.

    Antialiased where a side shrinks more than twice (plain bilinear would
    skip source pixels there); milder factors use plain bilinear, which e.g.
    inverts mmdet's nearest upsampling by 2 exactly.
    """
    size = _shape2(size)
    if logits.shape[0] == 0:
        return logits.new_zeros(0, *size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    antialias = logits.shape[-2] > 2 * size[0] or logits.shape[-1] > 2 * size[1]
    return F.interpolate(logits[None], size=size, mode='bilinear', align_corners=False,
                         antialias=antialias)[0]


def _check_geometry(meta: dict) -> None:
    """Refuse samples whose ``img_shape`` is not the resized ``ori_shape``
    (a crop, which the metainfo does not record, cannot be replayed). Without
    ``scale_factor`` in the metainfo nothing can be checked."""
    if meta.get('scale_factor') is None:
        return
    ori_h, ori_w = _shape2(meta['ori_shape'])
    img_h, img_w = _shape2(meta['img_shape'])
    sw, sh = (float(s) for s in meta['scale_factor'][:2])
    if abs(img_h - ori_h * sh) > 1 or abs(img_w - ori_w * sw) > 1:
        raise ValueError(
            f"Image {meta.get('img_path')}: img_shape {(img_h, img_w)} is not ori_shape "
            f'{(ori_h, ori_w)} x scale_factor {(sw, sh)}: precomputed proposals follow '
            'resizes and flips only, not crops; drop cropping transforms from the pipeline.')


def to_batch_geometry(logits: Tensor, meta: dict, batch_size: Tuple[int, int]) -> Tensor:
    """Original-image logits ``(M, h, w)`` -> ``(M, Hp, Wp)`` over the padded batch.

    Resized to ``img_shape``, flipped as the sample was, padded with
    :data:`PAD_MASK_LOGIT`.
    """
    _check_geometry(meta)
    img_h, img_w = _shape2(meta['img_shape'])
    logits = resize_logits(logits, (img_h, img_w))
    if meta.get('flip', False):
        logits = flip_logits(logits, meta.get('flip_direction', 'horizontal'))
    pad_h, pad_w = batch_size[0] - img_h, batch_size[1] - img_w
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'img_shape {(img_h, img_w)} exceeds the batch {tuple(batch_size)}.')
    return F.pad(logits, (0, pad_w, 0, pad_h), value=PAD_MASK_LOGIT)


def to_original_geometry(logits: Tensor, meta: dict, batch_size: Tuple[int, int],
                         out_size: Tuple[int, int], chunk_size: int = 16) -> Tensor:
    """Batch logits ``(M, h, w)`` covering the padded batch -> ``(M, *out_size)``
    over the original image (the inverse of :func:`to_batch_geometry`).

    ``(h, w)`` may be any resolution of the padded batch ``(Hp, Wp) =
    batch_size``: it is upsampled to ``(Hp, Wp)``, cropped to ``img_shape``,
    unflipped and resized to ``out_size``, ``chunk_size`` proposals at a time
    to bound memory.
    """
    _check_geometry(meta)
    batch_h, batch_w = _shape2(batch_size)
    img_h, img_w = _shape2(meta['img_shape'])
    out = []
    for chunk in logits.split(chunk_size):
        chunk = resize_logits(chunk.float(), (batch_h, batch_w))[:, :img_h, :img_w]
        if meta.get('flip', False):
            chunk = flip_logits(chunk, meta.get('flip_direction', 'horizontal'))
        out.append(resize_logits(chunk, out_size))
    if not out:
        return logits.new_zeros(0, *_shape2(out_size), dtype=torch.float32)
    return torch.cat(out)

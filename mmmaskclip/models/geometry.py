# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mask and image geometry: original image <-> padded batch <-> encoder.

A pipeline may resize and flip an image (not crop: the metainfo does not
record crops); masks of that image live in four frames: the original image
(``ori_shape``), the transformed image (``img_shape``), the padded batch
(``batch_input_shape``) and the CLIP encoder's input, which is either the
padded batch squashed to a fixed size (``input_size``, the authors' 336x336)
or the padded batch itself, padded further to a multiple of the patch size
(``input_size=None``). These functions move images and mask logits between
the frames, once, for every proposal source, the losses and the outputs.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .utils import PAD_MASK_LOGIT, resize_mask_logits, shrinks_much


def shape2(shape: Sequence[int]) -> Tuple[int, int]:
    return int(shape[0]), int(shape[1])


def flip_logits(logits: Tensor, direction: Optional[str]) -> Tensor:
    """Flip ``(..., H, W)`` as mmdet's ``RandomFlip`` flips the image."""
    dims = {'horizontal': (-1, ), 'vertical': (-2, ), 'diagonal': (-2, -1)}
    if direction not in dims:
        raise ValueError(f'Unknown flip direction {direction!r}.')
    return logits.flip(dims[direction])


def _check_geometry(meta: dict) -> None:
    """Refuse samples whose ``img_shape`` is not the resized ``ori_shape``
    (a crop, which the metainfo does not record, cannot be replayed). Without
    ``scale_factor`` in the metainfo nothing can be checked."""
    if meta.get('scale_factor') is None:
        return
    ori_h, ori_w = shape2(meta['ori_shape'])
    img_h, img_w = shape2(meta['img_shape'])
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
    img_h, img_w = shape2(meta['img_shape'])
    logits = resize_mask_logits(logits, (img_h, img_w))
    if meta.get('flip', False):
        logits = flip_logits(logits, meta.get('flip_direction', 'horizontal'))
    pad_h, pad_w = batch_size[0] - img_h, batch_size[1] - img_w
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'img_shape {(img_h, img_w)} exceeds the batch {tuple(batch_size)}.')
    return F.pad(logits, (0, pad_w, 0, pad_h), value=PAD_MASK_LOGIT)


def to_original_geometry(logits: Tensor,
                         meta: dict,
                         batch_size: Tuple[int, int],
                         out_size: Tuple[int, int],
                         chunk_size: int = 16) -> Tensor:
    """Batch logits ``(M, h, w)`` covering the padded batch -> ``(M, *out_size)``
    over the original image (the inverse of :func:`to_batch_geometry`).

    ``(h, w)`` may be any resolution of the padded batch ``(Hp, Wp) =
    batch_size``: it is upsampled to ``(Hp, Wp)``, cropped to ``img_shape``,
    unflipped and resized to ``out_size``, ``chunk_size`` proposals at a time
    to bound memory.
    """
    _check_geometry(meta)
    batch_h, batch_w = shape2(batch_size)
    img_h, img_w = shape2(meta['img_shape'])
    out = []
    for chunk in logits.split(chunk_size):
        chunk = resize_mask_logits(chunk.float(), (batch_h, batch_w))[:, :img_h, :img_w]
        if meta.get('flip', False):
            chunk = flip_logits(chunk, meta.get('flip_direction', 'horizontal'))
        out.append(resize_mask_logits(chunk, out_size))
    if not out:
        return logits.new_zeros(0, *shape2(out_size), dtype=torch.float32)
    return torch.cat(out)


def _resize_axis(x: Tensor, length: int, dim: int, antialias: bool) -> Tensor:
    """Bilinear resize of ``(N, A, B)`` along ``dim`` (1 or 2) to ``length``,
    the other side unchanged (an exact identity in ``F.interpolate``)."""
    if x.shape[dim] == length:
        return x
    size = (length, x.shape[2]) if dim == 1 else (x.shape[1], length)
    return F.interpolate(
        x[:, None], size=size, mode='bilinear', align_corners=False, antialias=antialias)[:, 0]


class OriginalMaskLogits:
    """Batch mask logits seen over the original image, one band of rows at a
    time: :func:`to_original_geometry` without ever holding ``M x H x W``.

    A 4000x3000 photo with 100 proposals is 4.8 GB of float logits per copy;
    consumers that work per pixel (the post-processor) read bands of rows
    instead. Rows are resampled by a small ``(H, h)`` matrix, the chain of
    resize, crop, flip and resize along the height (built by running that
    chain on the identity), columns by the same ``F.interpolate`` steps as
    :func:`to_original_geometry`; a band of all rows is
    :func:`to_original_geometry` itself, bit for bit. Bilinear resizing is
    separable, so bands equal the whole to float rounding.

    Args:
        logits (Tensor): ``(M, h, w)`` covering the padded batch.
        meta (dict): the sample's metainfo (``img_shape``, flips).
        batch_size (tuple[int, int]): the padded batch ``(Hp, Wp)``.
        out_size (tuple[int, int]): ``(H, W)``, e.g. ``ori_shape``.
    """

    def __init__(self, logits: Tensor, meta: dict, batch_size: Tuple[int, int],
                 out_size: Tuple[int, int]) -> None:
        _check_geometry(meta)
        self.logits = logits
        self.meta = meta
        self.batch_size = shape2(batch_size)
        self.out_size = shape2(out_size)
        self.img_size = shape2(meta['img_shape'])
        direction = meta.get('flip_direction', 'horizontal') if meta.get('flip', False) else None
        if direction not in (None, 'horizontal', 'vertical', 'diagonal'):
            raise ValueError(f'Unknown flip direction {direction!r}.')
        self.flipped = (direction in ('vertical', 'diagonal'), direction
                        in ('horizontal', 'diagonal'))
        self.antialias = (shrinks_much(logits.shape[-2:],
                                       self.batch_size), shrinks_much(self.img_size, self.out_size))
        self._row_matrix: Optional[Tensor] = None

    @property
    def shape(self) -> Tuple[int, int, int]:
        """``(M, H, W)``."""
        return (int(self.logits.shape[0]), *self.out_size)

    def full(self, index: Optional[Tensor] = None) -> Tensor:
        """All rows, ``(M', H, W)`` float: :func:`to_original_geometry` of the
        proposals ``index`` (all by default)."""
        logits = self.logits if index is None else self.logits[index]
        return to_original_geometry(logits, self.meta, self.batch_size, self.out_size)

    def _chain(self, x: Tensor, dim: int) -> Tensor:
        """``(N, A, B)`` along ``dim`` (1: rows, 2: columns): resize to the
        batch, crop to ``img_shape``, unflip, resize to ``out_size``."""
        axis = dim - 1
        x = _resize_axis(x, self.batch_size[axis], dim, self.antialias[0])
        x = x.narrow(dim, 0, self.img_size[axis])
        if self.flipped[axis]:
            x = x.flip(dim)
        return _resize_axis(x, self.out_size[axis], dim, self.antialias[1])

    def row_matrix(self) -> Tensor:
        """``(H, h)``: output row ``i`` = ``sum_a R[i, a]`` input row ``a``."""
        if self._row_matrix is None:
            height = self.logits.shape[-2]
            eye = torch.eye(height, dtype=torch.float32, device=self.logits.device)
            # two columns: torch's antialiased resize errs on 1-pixel-wide inputs
            eye = eye[:, :, None].expand(-1, -1, 2).contiguous()
            self._row_matrix = self._chain(eye, 1)[:, :, 0].t().contiguous()
        return self._row_matrix

    def rows(self, start: int, stop: int, index: Optional[Tensor] = None) -> Tensor:
        """Rows ``start:stop`` of the proposals ``index`` (all by default):
        ``(M', stop - start, W)`` float logits."""
        if start == 0 and stop >= self.out_size[0]:
            return self.full(index)
        logits = self.logits if index is None else self.logits[index]
        weights = self.row_matrix()[start:stop]
        used = weights.any(0).nonzero()[:, 0]
        if len(used) == 0 or len(logits) == 0:
            return logits.new_zeros(
                len(logits), stop - start, self.out_size[1], dtype=torch.float32)
        low, high = int(used[0]), int(used[-1]) + 1
        band = torch.einsum('rh,mhw->mrw', weights[:, low:high], logits[:, low:high].float())
        return self._chain(band, 2)


# ------------------------------------------------------------- encoder frame
def encoder_size(batch_size: Sequence[int],
                 patch_size: Sequence[int],
                 input_size: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """Size ``(He, We)`` of the encoder input for a padded batch ``(Hp, Wp)``.

    ``input_size`` when given (the batch is squashed to it), else the batch
    rounded up to a multiple of the patch size (the batch is padded).
    """
    ph, pw = shape2(patch_size)
    if input_size is not None:
        height, width = shape2(input_size)
        if height % ph or width % pw:
            raise ValueError(f'encoder_input_size {(height, width)} is not a multiple of the '
                             f'patch size {(ph, pw)}.')
        return height, width
    batch_h, batch_w = shape2(batch_size)
    return math.ceil(batch_h / ph) * ph, math.ceil(batch_w / pw) * pw


def resize_images(images: Tensor,
                  size: Tuple[int, int],
                  mode: str = 'bicubic',
                  antialias: bool = True) -> Tensor:
    """The one resize rule of CLIP inputs: ``(B, 3, h, w)`` -> ``(B, 3, *size)``.

    ``align_corners=False``, no clamping (bicubic may overshoot the pixel
    range, as in the authors' torchvision ``Resize`` on tensors, which had no
    antialiasing then: ``antialias=False`` reproduces it).
    """
    size = shape2(size)
    if tuple(images.shape[-2:]) == size:
        return images
    align = None if mode in ('nearest', 'area') else False
    return F.interpolate(
        images,
        size=size,
        mode=mode,
        align_corners=align,
        antialias=antialias and mode in ('bilinear', 'bicubic'))


def images_to_encoder(images: Tensor,
                      patch_size: Sequence[int],
                      input_size: Optional[Sequence[int]] = None,
                      mode: str = 'bicubic',
                      antialias: bool = True) -> Tensor:
    """Normalised padded batch ``(B, 3, Hp, Wp)`` -> encoder input ``(B, 3, He, We)``:
    squashed to ``input_size`` with :func:`resize_images`, or zero-padded
    (CLIP's mean after normalisation) at the bottom and right to a multiple
    of the patch size."""
    size = encoder_size(images.shape[-2:], patch_size, input_size)
    if input_size is not None:
        return resize_images(images, size, mode, antialias)
    pad_h, pad_w = size[0] - images.shape[-2], size[1] - images.shape[-1]
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images


def masks_to_encoder(mask_logits: Tensor,
                     batch_size: Sequence[int],
                     patch_size: Sequence[int],
                     input_size: Optional[Sequence[int]] = None,
                     antialias: bool = True) -> Tensor:
    """Mask logits covering the padded batch -> the encoder frame, exactly as
    :func:`images_to_encoder` moves the image.

    Args:
        mask_logits (Tensor): ``(B, M, h, w)`` at any resolution of the padded
            batch (e.g. a proposer's quarter resolution).
        batch_size (Sequence[int]): the padded batch ``(Hp, Wp)``.
        patch_size (Sequence[int]): the ViT patch size.
        input_size (Sequence[int], optional): squash size, see
            :func:`encoder_size`.
        antialias (bool): antialias where a side shrinks by more than 2x
            (bilinear either way; :func:`~mmmaskclip.models.utils.resize_mask_logits`).

    Returns:
        Tensor: ``(B, M, He, We)``: resized straight to ``input_size``; or
        resized to ``(Hp, Wp)`` and padded with :data:`PAD_MASK_LOGIT` to the
        patch multiple, so the padding of the image is outside every mask.
    """
    size = encoder_size(batch_size, patch_size, input_size)
    inner = size if input_size is not None else shape2(batch_size)
    mask_logits = resize_mask_logits(mask_logits, inner, antialias)
    pad_h, pad_w = size[0] - inner[0], size[1] - inner[1]
    if pad_h or pad_w:
        mask_logits = F.pad(mask_logits, (0, pad_w, 0, pad_h), value=PAD_MASK_LOGIT)
    return mask_logits


def masks_from_encoder(mask_logits: Tensor,
                       batch_size: Sequence[int],
                       input_size: Optional[Sequence[int]] = None) -> Tensor:
    """Encoder-frame masks ``(B, M, He, We)`` -> masks that cover exactly the
    padded batch, without upsampling: the patch padding is cropped off (a
    view) when the batch was padded; squashed masks already cover the batch
    (at ``input_size``; :func:`point_sample_resized` and
    :func:`to_original_geometry` resize them lazily)."""
    if input_size is not None:
        return mask_logits
    batch_h, batch_w = shape2(batch_size)
    return mask_logits[..., :batch_h, :batch_w]


def _bilinear_taps(pixel: Tensor, out_len: int, in_len: int) -> Tuple[Tensor, Tensor]:
    """Source indices and weights ``(..., 4)`` giving the values at the two
    ``grid_sample`` neighbours of ``pixel`` (zero padding) on an axis of
    ``out_len`` pixels that ``F.interpolate`` (bilinear, ``align_corners=False``)
    resized from ``in_len`` pixels."""
    lower = pixel.floor()
    index, weight = [], []
    for pos, w_pos in ((lower, 1 - (pixel - lower)), (lower + 1, pixel - lower)):
        inside = (pos >= 0) & (pos <= out_len - 1)
        src = ((pos + 0.5) * (in_len / out_len) - 0.5).clamp(min=0)
        lo = src.floor().clamp(max=in_len - 1)
        frac = src - lo
        hi = (lo + 1).clamp(max=in_len - 1)
        w_pos = w_pos * inside
        index += [lo, hi]
        weight += [w_pos * (1 - frac), w_pos * frac]
    return torch.stack(index, -1).long(), torch.stack(weight, -1)


def point_sample_resized(masks: Tensor, coords: Tensor, size: Sequence[int]) -> Tensor:
    """``point_sample`` of masks bilinearly resized to ``size``, without
    materialising the resized masks.

    Equals ``mmcv.ops.point_sample(F.interpolate(masks, size, mode='bilinear',
    align_corners=False), coords)`` (``align_corners=False``, zero padding)
    to float error, at ``O(N P)`` memory instead of ``O(N H W)``.

    Args:
        masks (Tensor): ``(N, 1, h, w)`` logits.
        coords (Tensor): ``(N, P, 2)`` normalised ``(x, y)`` in ``[0, 1]``.
        size (Sequence[int]): the resolution ``(H, W)`` the masks stand for.

    Returns:
        Tensor: ``(N, 1, P)`` sampled values.
    """
    out_h, out_w = shape2(size)
    in_h, in_w = masks.shape[-2:]
    coords = coords.to(masks.dtype if masks.is_floating_point() else torch.float32)
    yi, yw = _bilinear_taps(coords[..., 1] * out_h - 0.5, out_h, in_h)  # N P 4
    xi, xw = _bilinear_taps(coords[..., 0] * out_w - 0.5, out_w, in_w)
    flat = masks.flatten(1)  # N, h*w
    index = (yi[..., :, None] * in_w + xi[..., None, :]).flatten(2)  # N P 16
    weight = (yw[..., :, None] * xw[..., None, :]).flatten(2).to(masks.dtype)
    values = flat.gather(1, index.flatten(1)).view_as(weight)
    return (values * weight).sum(-1)[:, None]

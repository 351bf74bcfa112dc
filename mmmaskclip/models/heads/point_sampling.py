# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Point sampling of mask logits for the matching costs and the mask losses,
at the masks' own resolution (Mask2Former's point-based losses).

The refined masks of MaskCLIP live at the encoder's resolution (336x336 for
the authors' ViT-L/14@336) while they stand for the padded batch (e.g.
1024x1024): the points are read as if the masks had been bilinearly resized
to the batch, without ever materialising that resize.
"""
from typing import Optional, Tuple

import torch
from mmcv.ops import point_sample
from torch import Tensor

from ..geometry import point_sample_resized

#: Size ``(H, W)`` that mask logits stand for (the padded batch), or None.
OptSize = Optional[Tuple[int, int]]


def sample_points(masks: Tensor, coords: Tensor, mask_size: OptSize = None) -> Tensor:
    """``point_sample`` of ``(N, 1, h, w)`` logits at ``(N, P, 2)`` normalised
    coordinates, as if the logits were first bilinearly resized to
    ``mask_size`` (which is never materialised): ``(N, 1, P)``."""
    if mask_size is None or tuple(masks.shape[-2:]) == tuple(mask_size):
        return point_sample(masks, coords)
    return point_sample_resized(masks, coords, mask_size)


def uncertain_point_coords(masks: Tensor,
                           num_points: int,
                           oversample_ratio: float,
                           importance_sample_ratio: float,
                           mask_size: OptSize = None) -> Tensor:
    """Mask2Former's importance sampling of ``(N, num_points, 2)`` point
    coordinates on ``(N, 1, h, w)`` logits (uncertainty ``-|logit|``), with
    the logits read through :func:`sample_points` (same random draws as
    mmdet's ``get_uncertain_point_coords_with_randomness``)."""
    num = masks.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(num, num_sampled, 2, device=masks.device)
    uncertainty = -sample_points(masks, coords, mask_size)[:, 0].abs()
    num_uncertain = int(importance_sample_ratio * num_points)
    index = uncertainty.topk(num_uncertain, dim=1).indices
    coords_uncertain = coords.gather(1, index[..., None].expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords_uncertain = torch.cat(
            [coords_uncertain,
             torch.rand(num, num_random, 2, device=masks.device)], dim=1)
    return coords_uncertain

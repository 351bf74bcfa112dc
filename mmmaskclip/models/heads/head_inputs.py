# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Inputs of :class:`MaskCLIPHead`: shape checks and ground-truth masks as tensors."""
from typing import List, Sequence, Union

import torch
from mmdet.structures.mask import BaseInstanceMasks
from mmengine.structures import InstanceData
from torch import Tensor


def as_layer_list(mask_logits: Union[Tensor, Sequence[Tensor]]) -> List[Tensor]:
    """``mask_logits`` as a non-empty list of layers (a single tensor is one layer)."""
    if isinstance(mask_logits, Tensor):
        return [mask_logits]
    mask_logits = list(mask_logits)
    assert len(mask_logits) > 0, 'mask_logits must hold at least one layer'
    return mask_logits


def check_head_inputs(cls_logits: Tensor, mask_logits: List[Tensor], valid: Tensor,
                      batch_gt_instances: Sequence[InstanceData]) -> None:
    """Assert ``(B, M, C)`` logits, ``(B, M, H, W)`` layers, ``(B, M)`` validity, B GTs."""
    assert cls_logits.dim() == 3, \
        f'cls_logits must be (B, M, C), got {tuple(cls_logits.shape)}'
    num_imgs, num_props = cls_logits.shape[:2]
    for i, masks in enumerate(mask_logits):
        assert masks.dim() == 4 and tuple(masks.shape[:2]) == (num_imgs, num_props), \
            f'mask_logits[{i}] must be (B, M, H, W) with B={num_imgs}, ' \
            f'M={num_props}; got {tuple(masks.shape)}'
    assert tuple(valid.shape) == (num_imgs, num_props), \
        f'valid must be (B, M) = {(num_imgs, num_props)}, got {tuple(valid.shape)}'
    assert len(batch_gt_instances) == num_imgs, \
        f'{len(batch_gt_instances)} gt instances for {num_imgs} images'


def gt_mask_tensor(gt_instances: InstanceData, device: torch.device) -> Tensor:
    """GT masks of one image as a ``(K, Hp, Wp)`` tensor on ``device``.

    Accepts a bool/uint8/float tensor or any mmdet instance-mask structure
    (``BitmapMasks``, ``PolygonMasks``).
    """
    masks = gt_instances.masks
    if isinstance(masks, BaseInstanceMasks):
        return masks.to_tensor(dtype=torch.bool, device=device)
    return masks.to(device)

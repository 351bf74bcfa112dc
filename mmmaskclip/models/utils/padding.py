# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The padding of a batch: the pixels outside each sample's ``img_shape``."""
from typing import Sequence, Union

import torch
from mmdet.structures import SampleList
from torch import Tensor


def fill_padding(images: Tensor, batch_data_samples: SampleList,
                 value: Union[float, Sequence[float], Tensor]) -> Tensor:
    """Write ``value`` (a scalar or one per channel) outside each sample's
    ``img_shape`` in ``(B, C, H, W)`` images.

    Returns:
        Tensor: ``images`` itself when nothing is padded, else a float copy.
    """
    height, width = images.shape[-2:]
    shapes = [tuple(s.metainfo.get('img_shape', (height, width))[:2]) for s in batch_data_samples]
    if all(shape == (height, width) for shape in shapes):
        return images
    out = images.float().clone()
    value = torch.as_tensor(value, dtype=out.dtype, device=out.device)
    value = value.view(-1, 1, 1) if value.dim() else value
    for image, (img_h, img_w) in zip(out, shapes):
        image[:, img_h:] = value
        image[:, :img_h, img_w:] = value
    return out

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Images and predictions made small enough to draw.

mmengine's visualiser renders through matplotlib, which holds about 110
bytes per pixel while it draws (1.3 GB for a 4000x3000 photo, for every
drawn layer); drawings are therefore made at most ``max_side`` pixels on
the long side, from the predictions at the photo's own size (the saved
masks keep that size).
"""
from typing import Optional, Tuple, Union

import mmcv
import mmengine
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData

#: The long side of drawings by default (pixels).
MAX_DRAWING_SIDE = 2048


def drawing_size(height: int, width: int, max_side: Optional[int]) -> Tuple[int, int]:
    """``(h, w)``: the image scaled to at most ``max_side`` on its long side
    (aspect kept; unchanged when it fits or ``max_side`` is None)."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def drawing_image(single: Union[str, np.ndarray], max_side: Optional[int]) -> np.ndarray:
    """The picture to draw on: a path read as RGB (as mmdet's inferencer
    draws files), an array as given; area-resampled to :func:`drawing_size`."""
    if isinstance(single, str):
        image = mmcv.imfrombytes(mmengine.fileio.get(single), channel_order='rgb')
    else:
        image = single
    height, width = drawing_size(*image.shape[:2], max_side)
    if (height, width) == image.shape[:2]:
        return image
    return mmcv.imresize(image, (width, height), interpolation='area')


def _nearest_index(size: Tuple[int, int], out: Tuple[int, int]) -> torch.Tensor:
    """Flat indices into ``size`` of the nearest pixel of each of ``out``
    (pixel centres, as ``F.interpolate(mode='nearest-exact')``)."""
    (height, width), (out_h, out_w) = size, out
    rows = ((torch.arange(out_h) + 0.5) * (height / out_h)).long().clamp(max=height - 1)
    cols = ((torch.arange(out_w) + 0.5) * (width / out_w)).long().clamp(max=width - 1)
    return (rows[:, None] * width + cols[None]).flatten()


def drawing_prediction(pred: DetDataSample, size: Tuple[int, int],
                       score_thr: float) -> DetDataSample:
    """``pred`` at ``size`` for drawing: label maps and instance masks by
    nearest pixel, boxes scaled, instances scoring ``score_thr`` or less
    dropped first (mmdet's drawing drops them anyway). ``pred`` itself when
    it already has ``size``."""
    fields = [k for k in ('pred_panoptic_seg', 'pred_sem_seg') if k in pred]
    shapes = [tuple(pred.get(k).sem_seg.shape[-2:]) for k in fields]
    if 'pred_instances' in pred:
        shapes.append(tuple(pred.pred_instances.masks.shape[-2:]))
    if not shapes or all(s == tuple(size) for s in shapes):
        return pred
    small = DetDataSample(metainfo=pred.metainfo)
    for key, shape in zip(fields, shapes):
        seg = pred.get(key).sem_seg
        index = _nearest_index(shape, size).to(seg.device)
        small.set_field(PixelData(sem_seg=seg.flatten(1)[:, index].view(1, *size)), key)
    if 'pred_instances' in pred:
        inst = pred.pred_instances
        inst = inst[inst.scores > score_thr]
        shape = tuple(inst.masks.shape[-2:])
        index = _nearest_index(shape, size).to(inst.masks.device)
        scale = inst.bboxes.new_tensor([size[1] / shape[1], size[0] / shape[0]] * 2)
        small.pred_instances = InstanceData(
            masks=inst.masks.flatten(1)[:, index].view(len(inst), *size),
            labels=inst.labels,
            scores=inst.scores,
            bboxes=inst.bboxes * scale)
    return small

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Drawings of large photos are made small first (matplotlib holds ~110
bytes a pixel while it draws), from the full-size predictions."""
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData

from mmmaskclip.apis.drawing import drawing_image, drawing_prediction, drawing_size


def test_drawing_size_keeps_the_aspect():
    assert drawing_size(3000, 4000, 2048) == (1536, 2048)
    assert drawing_size(10, 4000, 2048) == (5, 2048)
    assert drawing_size(1, 4000, 100) == (1, 100)  # never 0 pixels
    assert drawing_size(600, 800, 2048) == (600, 800)
    assert drawing_size(3000, 4000, None) == (3000, 4000)


def test_drawing_image_reads_rgb_and_shrinks(tmp_path):
    import mmcv
    image = np.zeros((40, 60, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    mmcv.imwrite(image, str(tmp_path / 'red.png'))
    drawn = drawing_image(str(tmp_path / 'red.png'), 30)
    assert drawn.shape == (20, 30, 3) and (drawn[..., 0] == 255).all()  # RGB
    assert drawing_image(image, None) is image


def big_prediction():
    """A 300x400 prediction: a thing box and stuff elsewhere."""
    pan = torch.full((1, 300, 400), 3, dtype=torch.int32)
    pan[0, 100:200, 100:300] = 0 + 1000
    pan[0, 200:] = 2
    masks = torch.zeros(2, 300, 400, dtype=torch.bool)
    masks[0, 100:200, 100:300] = True
    masks[1, :50, :50] = True
    pred = DetDataSample(metainfo=dict(ori_shape=(300, 400)))
    pred.pred_panoptic_seg = PixelData(sem_seg=pan)
    pred.pred_sem_seg = PixelData(sem_seg=(pan % 1000).long())
    pred.pred_instances = InstanceData(
        masks=masks,
        labels=torch.tensor([0, 1]),
        scores=torch.tensor([0.9, 0.1]),
        bboxes=torch.tensor([[100.0, 100, 300, 200], [0, 0, 50, 50]]))
    return pred


def test_drawing_prediction_shrinks_every_field():
    pred = big_prediction()
    small = drawing_prediction(pred, (30, 40), score_thr=0.3)
    pan = small.pred_panoptic_seg.sem_seg
    assert pan.shape == (1, 30, 40) and pan.dtype == torch.int32
    assert (pan[0, 10:20, 10:30] == 1000).all() and (pan[0, 20:] == 2).all()
    assert torch.equal(small.pred_sem_seg.sem_seg, (pan % 1000).long())
    inst = small.pred_instances
    assert len(inst) == 1  # the 0.1 instance is not drawn anyway
    assert inst.masks.shape == (1, 30, 40) and inst.masks[0].sum() == 10 * 20
    assert inst.bboxes.tolist() == [[10.0, 10.0, 30.0, 20.0]]
    assert pred.pred_instances.masks.shape == (2, 300, 400)  # the original is untouched
    assert drawing_prediction(pred, (300, 400), 0.3) is pred

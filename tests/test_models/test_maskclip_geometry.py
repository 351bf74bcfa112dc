# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Geometry and post-processing end to end: ground-truth masks as proposals
with classification made exact give the ground-truth panoptic and semantic
maps back through mmdet's metrics, whatever the resize, padding and flip."""
import pytest
import torch
from conftest import make_tiny_clip
from mmengine.runner import Runner
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import exact_classification, tiny_maskclip_cfg

import mmmaskclip  # noqa: F401


def ground_truth_config(tmp_path, num_images, name):
    """A training-free tiny MaskCLIP with ground-truth proposals on a
    synthetic dataset of odd-sized (61 x 47) images."""
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=num_images, image_size=(61, 47))
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(
        str(tmp_path / 'work'),
        data,
        clip_path,
        max_iters=1,
        rma_blocks=(),
        proposer=dict(type='GTMaskProposer'),
        evaluate=True)
    cfg.experiment_name = f'geometry_{name}_{id(tmp_path)}'
    cfg.model.head = None
    return cfg, data


@pytest.mark.parametrize('encoder_input_size,flip', [(None, True), ((64, 64), False),
                                                     ((64, 64), True)])
def test_ground_truth_round_trip(tmp_path, encoder_input_size, flip):
    # odd image sizes, an upscale, padding to 32 and a flip on the way in
    cfg, data = ground_truth_config(tmp_path, 3, f'{encoder_input_size}_{flip}')
    cfg.model.encoder_input_size = encoder_input_size
    # annotations follow the image through the geometric transforms (the
    # proposals are the transformed ground truth); the panoptic metric reads
    # the original PNGs, so predictions must come back to the original frame
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline.insert(-1, dict(type='Resize', scale_factor=2.0, keep_ratio=True))
    if flip:
        pipeline.insert(-1, dict(type='RandomFlip', prob=1.0, direction='horizontal'))
    cfg.test_evaluator = cfg.test_evaluator[:1]  # CocoPanopticMetric
    runner = Runner.from_cfg(cfg)
    exact_classification(runner.model)
    metrics = runner.test()
    assert metrics['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert metrics['coco_panoptic/SQ'] == pytest.approx(100.0)
    # the semantic output agrees with the panoptic one on every labelled pixel
    for batch in runner.test_dataloader:
        for sample in runner.model.test_step(batch):
            pan = sample.pred_panoptic_seg.sem_seg[0]
            sem = sample.pred_sem_seg.sem_seg[0]
            assert sem.shape == pan.shape == tuple(sample.ori_shape)
            labelled = pan != len(data['classes'])
            assert labelled.all()
            assert torch.equal(sem[labelled], (pan % 1000)[labelled].to(sem.dtype))


def test_annotations_loaded_after_the_transforms(tmp_path):
    """mmdet's test pipelines load annotations after Resize (and flips):
    ground-truth proposals then come at the original size and are brought
    to the batch as the image was; mmdet's SemSegMetric sees the original
    frame too."""
    cfg, data = ground_truth_config(tmp_path, 2, 'late_annotations')
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline.insert(1, dict(type='Resize', scale_factor=2.0, keep_ratio=True))
    pipeline.insert(2, dict(type='RandomFlip', prob=1.0, direction='horizontal'))
    runner = Runner.from_cfg(cfg)
    exact_classification(runner.model)
    metrics = runner.test()
    assert metrics['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert metrics['mIoU'] == pytest.approx(100.0)

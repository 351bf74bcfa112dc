# Copyright (c) mmmaskclip contributors. All rights reserved.
"""MaskCLIP end to end with mmdet detectors as proposers (random weights):
the class-agnostic Mask2Former and Mask R-CNN configs of configs/proposals."""
import os.path as osp

import pytest
import torch
from conftest import make_tiny_clip
from mmengine.config import Config
from mmengine.runner import Runner
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import shrink_mask2former, shrink_mask_rcnn, tiny_maskclip_cfg

import mmmaskclip  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PROPOSERS = {
    'mask2former': ('configs/proposals/'
                    'mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py',
                    shrink_mask2former),
    'mask_rcnn': ('configs/proposals/mask-rcnn_r50_fpn_1x_coco-panoptic_class-agnostic.py',
                  shrink_mask_rcnn),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PROPOSERS))
def test_detector_proposer_end_to_end(name, tmp_path):
    path, shrink = PROPOSERS[name]
    detector = Config.fromfile(osp.join(REPO, path)).model
    shrink(detector)
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=2, image_size=(64, 64))
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(str(tmp_path / 'work'), data, clip_path, max_iters=2,
                            proposer=dict(type='DetectorProposer', detector=detector),
                            evaluate=True)
    cfg.experiment_name = f'proposer_{name}_{id(tmp_path)}'
    cfg.model.use_objectness = True
    cfg.default_hooks.checkpoint.interval = 2
    runner = Runner.from_cfg(cfg)
    proposer = runner.model.proposer
    before = {k: v.clone() for k, v in proposer.state_dict().items()}
    runner.train()  # trains the RMA layers on the detector's proposals
    assert not proposer.training
    for key, value in proposer.state_dict().items():
        assert torch.equal(value, before[key]), key  # frozen, BN stats included
    metrics = runner.test()
    assert 'coco_panoptic/PQ' in metrics and 'mIoU' in metrics
    sample = runner.model.test_step(next(iter(runner.test_dataloader)))[0]
    assert sample.pred_sem_seg.sem_seg.shape[-2:] == (64, 64)
    assert sample.pred_instances.masks.shape[-2:] == (64, 64)

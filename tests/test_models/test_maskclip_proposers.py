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
    'mask2former':
    ('configs/proposals/'
     'mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py', shrink_mask2former),
    'mask_rcnn':
    ('configs/proposals/mask-rcnn_r50_fpn_1x_coco-panoptic_class-agnostic.py', shrink_mask_rcnn),
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
    cfg = tiny_maskclip_cfg(
        str(tmp_path / 'work'),
        data,
        clip_path,
        max_iters=2,
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


@pytest.mark.parametrize('name', sorted(PROPOSERS))
def test_detector_proposer_on_a_resized_semantic_sample(name):
    """The semantic benchmarks' pipelines resize but pack no scale_factor:
    Mask R-CNN used to paste masks on an ori_shape canvas with img_shape boxes
    (``RuntimeError: upper bound and lower bound inconsistent``)."""
    from mmdet.structures import DetDataSample

    from mmmaskclip.models import DetectorProposer
    path, shrink = PROPOSERS[name]
    detector = Config.fromfile(osp.join(REPO, path)).model
    shrink(detector)
    torch.manual_seed(0)
    proposer = DetectorProposer(detector=detector)
    if name == 'mask_rcnn':  # random weights: make every box an object
        proposer.detector.roi_head.bbox_head.fc_cls.bias.data = torch.tensor([6.0, -6.0])
    # 48 x 64 image resized x10 (ADE20K / PASCAL Context test pipelines), padded to 32
    sample = DetDataSample(
        metainfo=dict(
            img_path='x.jpg',
            ori_shape=(47, 63),
            img_shape=(470, 630),
            batch_input_shape=(480, 640)))
    images = torch.rand(1, 3, 480, 640) * 255
    proposals = proposer(images, [sample])
    masks, valid = proposals.mask_logits, proposals.valid
    if name == 'mask2former':  # the head's quarter resolution of the batch
        assert masks.shape[-2:] == (120, 160) and valid.all()
    else:
        assert masks.shape[-2:] == (480, 640) and valid.sum() > 0
        inside = masks[valid] > 0
        assert inside.any()
        assert not inside[:, 470:].any() and not inside[:, :, 630:].any()
    assert sample.metainfo['ori_shape'] == (47, 63)  # the caller's sample is untouched


def test_detector_proposer_normalises_as_the_detector_does():
    """The detector's own data_preprocessor decides its normalisation and
    channel order (a detector with other statistics is not silently fed
    ImageNet-normalised RGB)."""
    from mmdet.structures import DetDataSample

    from mmmaskclip.models import DetectorProposer
    path, shrink = PROPOSERS['mask2former']
    detector = Config.fromfile(osp.join(REPO, path)).model
    shrink(detector)
    detector.data_preprocessor.update(
        mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 8.0], bgr_to_rgb=False)  # BGR statistics
    proposer = DetectorProposer(detector=detector)
    seen = []
    extract = proposer.detector.extract_feat
    proposer.detector.extract_feat = lambda x: seen.append(x) or extract(x)
    images = torch.rand(1, 3, 64, 64) * 255  # MaskCLIP's batch: RGB
    proposer(images, [DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))])
    bgr = images.flip(1)
    expected = (bgr - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)) / torch.tensor(
        [2.0, 4.0, 8.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected)
    del detector['data_preprocessor']
    with pytest.raises(ValueError, match='data_preprocessor with mean and std'):
        DetectorProposer(detector=detector)

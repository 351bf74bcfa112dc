# Copyright (c) mmmaskclip contributors. All rights reserved.
"""End-to-end: train MaskCLIP's RMA layers with mmengine's Runner on a
synthetic COCO-panoptic dataset (tiny CLIP, noisy ground-truth proposals)."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip, tiny_clip_cfg
from mmengine.hooks import Hook
from mmengine.runner import Runner
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg

import mmmaskclip  # noqa: F401
from mmmaskclip.models import MaskCLIPVisualEncoder


def make_cfg(tmp_path, data, clip_path, max_iters, **kwargs):
    cfg = tiny_maskclip_cfg(str(tmp_path / 'work'), data, clip_path, max_iters, **kwargs)
    cfg.experiment_name = f'maskclip_{id(tmp_path)}_{max_iters}'
    return cfg


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('maskclip_train')
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=6, image_size=(64, 64))
    clip_path = str(tmp_path / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    return tmp_path, data, clip_path


def mean_iou(model, runner):
    """Mean IoU with the ground truth of the proposals and of the refined
    masks, over matched (ground-truth) proposals of the training images."""
    model.eval()
    ious = {'proposals': [], 'refined': []}
    with torch.no_grad():
        for batch in runner.train_dataloader:
            data = model.data_preprocessor(batch, False)
            samples = data['data_samples']
            gt = model.gt_segments(samples)
            proposals, regions, _ = model.encode(data['inputs'], samples, model.vocabulary(samples),
                                                 gt)
            size = tuple(data['inputs'].shape[-2:])
            refined = F.interpolate(
                model.batch_masks(proposals, regions, size)[-1], size=size, mode='bilinear')
            coarse = F.interpolate(proposals.mask_logits, size=size, mode='bilinear')
            for b, seg in enumerate(gt):
                k = len(seg.masks)  # GTMaskProposer keeps ground-truth order first
                for name, masks in (('proposals', coarse), ('refined', refined)):
                    pred = masks[b, :k] > 0
                    inter = (pred & seg.masks).flatten(1).sum(1).float()
                    union = (pred | seg.masks).flatten(1).sum(1).float().clamp(min=1)
                    ious[name].append(inter / union)
    return {k: torch.cat(v).mean().item() for k, v in ious.items()}


@pytest.mark.slow
def test_train_resume_and_refine(setup):
    tmp_path, data, clip_path = setup
    runner = Runner.from_cfg(make_cfg(tmp_path, data, clip_path, 40))
    model = runner.model
    frozen_before = {k: v.clone() for k, v in model.named_parameters() if not v.requires_grad}
    before = mean_iou(model, runner)
    losses = []

    class RecordLoss(Hook):

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append(float(outputs['loss'].detach()))

    runner.register_hook(RecordLoss(), priority='LOWEST')
    runner.train()

    # 0. frozen parts stayed in eval mode through training, RMA layers did not
    assert not model.proposer.training and not model.text_encoder.training
    assert not model.visual_encoder.clip_visual.training
    assert model.visual_encoder.mask_attention[1].training
    # 1. loss decreases
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8, losses
    # 2. frozen parameters did not change, and stayed frozen
    for name, param in model.named_parameters():
        if name in frozen_before:
            assert torch.equal(param, frozen_before[name]), name
    assert all(
        k.startswith('visual_encoder.mask_attention.') for k, v in model.named_parameters()
        if v.requires_grad)
    # 3. the optimizer holds the trainable parameters only
    in_optim = {id(p) for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
    assert in_optim == {id(p) for p in model.parameters() if p.requires_grad}
    # 4. the checkpoint holds the trainable parameters only
    ckpt_path = osp.join(runner.work_dir, 'iter_40.pth')
    with mmmaskclip.utils.runner_checkpoint_globals():
        ckpt = torch.load(ckpt_path, map_location='cpu')
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    assert set(ckpt['state_dict']) == trainable
    # 5. refinement learned: refined masks beat the noisy proposals
    after = mean_iou(model, runner)
    print(f'mean IoU before {before}, after {after}; loss {losses[:3]} -> {losses[-3:]}')
    assert after['refined'] > after['proposals'] + 0.02, (before, after)
    assert after['refined'] > before['refined'], (before, after)

    # 6. resume from iter 20 continues there and ends at 30 with the same
    #    trainable weights as the checkpoint had
    resumed = Runner.from_cfg(make_cfg(tmp_path, data, clip_path, 30))
    resumed.resume(osp.join(runner.work_dir, 'iter_20.pth'))
    assert resumed.iter == 20
    with mmmaskclip.utils.runner_checkpoint_globals():
        ckpt20 = torch.load(osp.join(runner.work_dir, 'iter_20.pth'), map_location='cpu')
    state = resumed.model.state_dict()
    for key, value in ckpt20['state_dict'].items():
        assert torch.equal(state[key], value), key
    resumed.train()
    assert resumed.iter == 30
    # frozen parts of the resumed model come from their own weights
    for name, param in resumed.model.named_parameters():
        if name in frozen_before:
            assert torch.equal(param, frozen_before[name]), name


def test_no_rma_layers_equal_foundation_encoder(setup):
    """With no RMA layers the detector's region embeddings are the training-
    free encoder's (MaskCLIP w/o RMA)."""
    tmp_path, data, clip_path = setup
    cfg = make_cfg(tmp_path, data, clip_path, 1, rma_blocks=())
    cfg.model.proposer = dict(type='GTMaskProposer')
    runner = Runner.from_cfg(cfg)
    model = runner.model.eval()
    plain = MaskCLIPVisualEncoder(clip=dict(model_cfg=tiny_clip_cfg(), pretrained=clip_path))
    batch = next(iter(runner.train_dataloader))
    data_ = model.data_preprocessor(batch, False)
    with torch.no_grad():
        proposals, regions, cls_logits = model.encode(data_['inputs'], data_['data_samples'],
                                                      model.vocabulary(data_['data_samples']))
        ref = plain(model.clip_images(data_['inputs']), proposals.mask_logits, proposals.valid)
    torch.testing.assert_close(regions.region_embeds, ref.region_embeds, atol=1e-5, rtol=0)
    assert cls_logits.shape[-1] == len(data['classes']) + 1  # and the void column
    with pytest.raises(ValueError, match='no trainable parameters'):
        runner.build_optim_wrapper(copy.deepcopy(cfg.optim_wrapper))

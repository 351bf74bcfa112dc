# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The whole reproduction path as a user runs it: a release in the authors'
layout -> the converter -> ``tools/test.py`` with the official preset, which
loads both converted checkpoints and reports ADE20K-150 PQ, AP and mIoU from
one forward. Full-size proposer; CLIP is a tiny 24-block one (its RMA layers
at the authors' blocks 5, 11, 17, 23)."""
import os.path as osp

import pytest
import torch
from conftest import load_script, make_tiny_clip, tiny_clip_cfg
from mmengine.config import ConfigDict
from official_state_dicts import official_maskclip_state_dict, official_proposer_state_dict
from test_shipped_configs import check_metrics, use_synthetic_data, use_tmp_runtime

CONFIG = 'configs/maskclip/official/maskclip-official_vit-l-14-336_ade20k-150.py'
TINY = dict(patch_size=14, image_size=56, layers=24, width=32)


@pytest.mark.slow
def test_converted_release_through_tools_test(tmp_path):
    clip = make_tiny_clip(seed=3, **TINY)
    clip_file = str(tmp_path / 'open_clip_pytorch_model.bin')
    torch.save(clip.state_dict(), clip_file)
    visual = {
        k[len('visual.'):]: v
        for k, v in clip.state_dict().items() if k.startswith('visual.')
    }
    release = dict(
        official_proposer_state_dict(seed=1), **official_maskclip_state_dict(visual, seed=2))
    torch.save({'model': release}, str(tmp_path / 'model_final.pth'))
    out = str(tmp_path / 'checkpoints')
    converter = load_script('tools/model_converters/maskclip_official_to_mmmaskclip.py')
    assert converter.main([str(tmp_path / 'model_final.pth'), out, '--clip-weights',
                           clip_file]) == 0
    rma_ckpt = osp.join(out, converter.RMA_OUT)
    proposer_ckpt = osp.join(out, converter.PROPOSER_OUT)

    tool = load_script('tools/test.py')
    args = tool.parse_args([
        CONFIG, rma_ckpt, '--no-progress', '--cfg-options',
        f'model.proposer.checkpoint={proposer_ckpt}'
    ])
    cfg = tool.build_cfg(args)
    cfg.model.clip = ConfigDict(model_cfg=tiny_clip_cfg(**TINY), pretrained=clip_file)
    use_synthetic_data(cfg, str(tmp_path / 'data'), CONFIG)
    use_tmp_runtime(cfg, str(tmp_path / 'work'))
    runner = load_script('tools/tool_common.py').build_runner(cfg)
    metrics = runner.test()
    check_metrics(metrics, cfg.test_evaluator)
    assert {'coco_panoptic/PQ', 'coco/segm_mAP', 'mIoU'} <= set(metrics)

    # the model that ran holds the release's tensors: RMA layers and proposer
    model = runner.model
    rma = torch.load(rma_ckpt, weights_only=True)['state_dict']
    for key, value in rma.items():
        assert torch.equal(model.state_dict(keep_vars=True)[key], value), key
    t = 'maskclip.visual.transformer.'
    assert torch.equal(model.visual_encoder.mask_attention[11].mask_patch_embed.weight,
                       release[t + 'conv1_added_params.1.weight'])
    assert torch.equal(model.visual_encoder.mask_attention[23].query_proj_m.bias,
                       release[t + 'resblocks.23.attn.q_prime_norm_added_params.bias'])
    proposer = model.proposer.detector.state_dict()
    assert torch.equal(proposer['backbone.conv1.weight'], release['backbone.stem.conv1.weight'])
    assert torch.equal(proposer['panoptic_head.query_feat.weight'],
                       release['sem_seg_head.predictor.query_feat.weight'])
    assert torch.equal(model.visual_encoder.clip_visual.conv1.weight,
                       release['maskclip.visual.conv1.weight'])

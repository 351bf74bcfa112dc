# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/train.py then tools/test.py on a tiny MaskCLIP, as a user runs them."""
import glob
import json
import os.path as osp
import pickle

import pytest
import torch
from conftest import load_script, make_tiny_clip
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg


def load_tool(name):
    return load_script(f'tools/{name}.py')


def last_metrics(work_dir):
    """Metrics of the last test run, from mmengine's json log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


@pytest.mark.slow
def test_train_then_test(tmp_path):
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=4, image_size=(64, 64))
    clip_path = str(tmp_path / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    work = str(tmp_path / 'work')
    cfg = tiny_maskclip_cfg(work, data, clip_path, max_iters=2, evaluate=True)
    cfg.default_hooks.checkpoint.interval = 2
    cfg_path = str(tmp_path / 'tiny_maskclip.py')
    cfg.dump(cfg_path)

    assert load_tool('train').main([cfg_path, '--work-dir', work]) == 0
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)

    out = str(tmp_path / 'preds.pkl')
    assert load_tool('test').main([cfg_path, ckpt, '--work-dir', work, '--out', out]) == 0
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4
    assert {'pred_panoptic_seg', 'pred_instances', 'pred_sem_seg'} <= set(preds[0])
    assert preds[0]['pred_sem_seg']['sem_seg'].shape[-2:] == (64, 64)
    metrics = last_metrics(work)
    assert 0 <= metrics['coco_panoptic/PQ'] <= 100 and 0 <= metrics['mIoU'] <= 100

    # training-free variant: no RMA, no head, no checkpoint ('none')
    cfg.model.visual_encoder.mask_attention_overrides = None
    cfg.model.head = None
    cfg.model.proposer = dict(type='GTMaskProposer')  # perfect masks
    free_path = str(tmp_path / 'tiny_maskclip_wo_rma.py')
    cfg.dump(free_path)
    assert load_tool('test').main([free_path, 'none', '--work-dir', work]) == 0
    metrics = last_metrics(work)
    # with ground-truth masks every true positive has IoU 1 (each class's SQ
    # is 100 or 0), so PQ == RQ; only the random-weight classification errs
    assert metrics['coco_panoptic/PQ'] == pytest.approx(metrics['coco_panoptic/RQ'], abs=1e-3)
    assert metrics['coco_panoptic/PQ'] > 0

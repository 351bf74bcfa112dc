# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Through mmdet's own metrics on a tiny ADE-style panoptic dataset: ground
truth masks as proposals and exact classification give PQ = mIoU = AP = 100;
one deliberately wrong class on one segment drops PQ and mIoU by the
hand-computed amounts."""
import numpy as np
import pytest
import torch
from conftest import make_tiny_clip
from mmengine.runner import Runner
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import exact_classification, tiny_maskclip_cfg

import mmmaskclip  # noqa: F401


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ade_exact')
    data = write_coco_panoptic(
        str(tmp / 'ade'),
        num_images=3,
        image_size=(48, 40),
        split='validation',
        things=('person', 'car', 'lamp'),
        stuff=('wall', 'floor'))
    clip_path = str(tmp / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    return tmp, data, clip_path


def run(ade, name, wrong=None):
    tmp, data, clip_path = ade
    cfg = tiny_maskclip_cfg(
        str(tmp / name),
        data,
        clip_path,
        max_iters=1,
        rma_blocks=(),
        proposer=dict(type='GTMaskProposer'),
        evaluate=True)
    cfg.experiment_name = f'exact_{name}_{id(tmp)}'
    cfg.model.head = None
    cfg.test_dataloader.dataset.type = 'ADE20KPanopticDataset'
    cfg.test_evaluator.append(
        dict(type='CocoMetric', metric='segm', ann_file=data['instances_json']))
    runner = Runner.from_cfg(cfg)
    exact_classification(runner.model, wrong)
    return runner.test()


def test_exact_classification_scores_100(ade):
    metrics = run(ade, 'exact')
    assert metrics['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert metrics['mIoU'] == pytest.approx(100.0)
    assert metrics['coco/segm_mAP'] == pytest.approx(1.0)


def test_one_wrong_class_drops_by_hand(ade):
    _, data, _ = ade
    image = data['images'][0]
    # the first thing segment of the first image (ground-truth proposals
    # list things first, in annotation order), relabelled as another thing
    seg = next(s for s in image['segments'] if s['isthing'])
    wrong_label = (seg['label'] + 1) % len(data['thing_classes'])
    metrics = run(ade, 'wrong', wrong=(image['img_id'], 0, wrong_label))

    # hand computation over the whole dataset (all masks are exact, IoU 1)
    all_segments = [s for img in data['images'] for s in img['segments']]
    counts = np.bincount([s['label'] for s in all_segments],
                         minlength=len(data['classes'])).astype(float)
    areas = np.bincount([s['label'] for s in all_segments],
                        weights=[s['area'] for s in all_segments],
                        minlength=len(data['classes']))
    a, b, area = seg['label'], wrong_label, seg['area']
    pq = np.ones(len(counts))
    pq[a] = (counts[a] - 1) / (counts[a] - 1 + 0.5)  # one FN
    pq[b] = counts[b] / (counts[b] + 0.5)  # one FP
    present = (counts > 0)
    assert metrics['coco_panoptic/PQ'] == pytest.approx(100 * pq[present].mean(), abs=1e-3)
    iou = np.ones(len(counts))
    iou[a] = (areas[a] - area) / areas[a]
    iou[b] = areas[b] / (areas[b] + area)
    assert metrics['mIoU'] == pytest.approx(100 * iou[present].mean(), abs=0.01)
    assert 0 < metrics['coco/segm_mAP'] < 1.0


def test_semantic_dataset_ground_truth_proposals(tmp_path):
    """A semantic dataset (ADE20KSegDataset layout, reduce_zero_label): the
    ground-truth proposals are one segment per class; exact classification
    gives mIoU = 100 through SemSegMetric (the Table 7 semantic setting)."""
    from PIL import Image
    root = tmp_path / 'ade'
    (root / 'images' / 'validation').mkdir(parents=True)
    (root / 'annotations' / 'validation').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        label = np.zeros((37, 45), dtype=np.uint8)  # 0 = unlabelled (ignored)
        label[:20] = 1 + i
        label[20:, :30] = 3
        label[20:, 30:] = 4
        image = (rng.random((37, 45, 3)) * 60).astype(np.uint8) + label[..., None] * 40
        Image.fromarray(image).save(root / 'images' / 'validation' / f'img{i}.jpg')
        Image.fromarray(label).save(root / 'annotations' / 'validation' / f'img{i}.png')
    classes = ('wall', 'floor', 'tree', 'ceiling')
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    data = dict(thing_classes=classes, stuff_classes=(), classes=classes)
    cfg = tiny_maskclip_cfg(
        str(tmp_path / 'work'),
        dict(data, data_root=str(root), ann_file='', data_prefix={}),
        clip_path,
        max_iters=1,
        rma_blocks=(),
        proposer=dict(type='GTMaskProposer'))
    cfg.experiment_name = f'semantic_gt_{id(tmp_path)}'
    cfg.model.head = None
    cfg.test_dataloader = dict(
        dataset=dict(
            type='ADE20KSegDataset',
            data_root=str(root),
            return_classes=True,
            metainfo=dict(classes=classes),
            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(90, 74), keep_ratio=True),
                dict(
                    type='LoadAnnotations',
                    with_bbox=False,
                    with_mask=False,
                    with_seg=True,
                    reduce_zero_label=True),
                dict(
                    type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'text'))
            ]))
    cfg.test_dataloader = dict(
        batch_size=1,
        num_workers=0,
        dataset=cfg.test_dataloader.dataset,
        sampler=dict(type='DefaultSampler', shuffle=False))
    cfg.test_evaluator = dict(type='SemSegMetric', iou_metrics=['mIoU'])
    cfg.test_cfg = dict(type='TestLoop')
    runner = Runner.from_cfg(cfg)
    exact_classification(runner.model)
    assert runner.test()['mIoU'] == pytest.approx(100.0)

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""ClassAgnosticSegments, the class-agnostic val json and the proposer
configs of configs/proposals (tiny models, a few CPU iterations)."""
import copy
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmmaskclip.datasets  # noqa: F401  (registers the transform)

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))
from synthetic_coco import write_coco_panoptic  # noqa: E402
from tiny_maskclip import shrink_mask2former, shrink_mask_rcnn  # noqa: E402

NUM_IMAGES, SIZE = 4, (64, 64)
M2F_CFG = 'configs/proposals/mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py'
MRCNN_CFG = 'configs/proposals/mask-rcnn_r50_fpn_1x_coco-panoptic_class-agnostic.py'


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """The synthetic COCO panoptic dataset and its class-agnostic val json."""
    from coco_panoptic2agnostic import convert
    data = write_coco_panoptic(
        str(tmp_path_factory.mktemp('coco')), num_images=NUM_IMAGES, image_size=SIZE)
    data['agnostic_json'] = convert(data['panoptic_json'])
    return data


def _dataset(coco, *transforms, instances=False):
    if instances:
        load = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
        extra = dict(
            type='CocoDataset',
            ann_file=coco['instances_ann_file'],
            data_prefix=dict(img=coco['data_prefix']['img']),
            metainfo=dict(classes=coco['thing_classes']))
    else:
        load = dict(type='LoadPanopticAnnotations')
        extra = dict(
            type='CocoPanopticDataset',
            ann_file=coco['ann_file'],
            data_prefix=coco['data_prefix'],
            metainfo=coco['metainfo'])
    pipeline = [dict(type='LoadImageFromFile'), load, *transforms, dict(type='PackDetInputs')]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(dict(data_root=coco['data_root'], pipeline=pipeline, **extra))


def _png_segments(coco, index):
    """``{segment id: (mask, isthing)}`` of image ``index``, from its PNG."""
    image = coco['images'][index]
    rgb = cv2.imread(osp.join(coco['seg_dir'], image['seg_file_name']))[..., ::-1]
    ids = rgb.astype(np.int64) @ np.array([1, 256, 256**2])
    return {s['id']: (ids == s['id'], s['isthing']) for s in image['segments']}


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _check_sample(sample, segments, min_area=1):
    gt = sample.gt_instances
    masks = gt.masks.to_ndarray().astype(bool)
    expected = [m for m, _ in segments if m.sum() >= min_area]
    assert len(gt) == len(expected) > 0
    assert (gt.labels == 0).all()
    for mask, box in zip(masks, gt.bboxes.numpy()):
        # every instance is exactly one segment of the PNG, once
        matches = [i for i, m in enumerate(expected) if (m == mask).all()]
        assert len(matches) == 1
        expected.pop(matches[0])
        np.testing.assert_allclose(box, _tight_box(mask))
    assert not expected


def test_things_and_stuff_become_objects(coco):
    dataset = _dataset(coco, dict(type='ClassAgnosticSegments'))
    kinds = set()
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        segments = _png_segments(coco, index).values()
        kinds |= {isthing for _, isthing in segments}
        _check_sample(sample, list(segments))
        assert len(sample.ignored_instances) == 0
        # panoptic heads see no stuff (and no thing) semantic labels
        assert (sample.gt_sem_seg.sem_seg == 255).all()
    assert kinds == {0, 1}


def test_things_only_and_min_area(coco):
    things = _dataset(coco, dict(type='ClassAgnosticSegments', with_stuff=False))
    for index in range(len(things)):
        segments = [(m, t) for m, t in _png_segments(coco, index).values() if t]
        _check_sample(things[index]['data_samples'], segments)

    areas = sorted(s['area'] for img in coco['images'] for s in img['segments'])
    min_area = areas[len(areas) // 2]
    small = _dataset(coco, dict(type='ClassAgnosticSegments', min_area=min_area, drop_seg_map=True))
    dropped = 0
    for index in range(len(small)):
        sample = small[index]['data_samples']
        segments = list(_png_segments(coco, index).values())
        dropped += sum(m.sum() < min_area for m, _ in segments)
        _check_sample(sample, segments, min_area=min_area)
        assert 'gt_sem_seg' not in sample
    assert dropped > 0


def test_instance_dataset(coco):
    dataset = _dataset(coco, dict(type='ClassAgnosticSegments'), instances=True)
    for index in range(len(dataset)):
        segments = [(m, t) for m, t in _png_segments(coco, index).values() if t]
        _check_sample(dataset[index]['data_samples'], segments)


def test_crowd_polygons_and_numpy_boxes():
    """Crowd regions (non-thing segments of thing labels) are ignored
    instances given ``num_things_classes``; polygon masks, numpy boxes."""
    seg = np.full((20, 30), 255, np.uint8)
    seg[:10] = 3  # stuff, label 3
    seg[10:, :15] = 1  # a crowd of thing label 1 ...
    seg[12:16, 20:26] = 1  # ... and a thing instance of label 1
    thing = PolygonMasks([[np.array([20, 12, 26, 12, 26, 16, 20, 16.])]], 20, 30)
    results = dict(
        gt_masks=thing,
        gt_bboxes=np.array([[20, 12, 26, 16]], np.float32),
        gt_bboxes_labels=np.array([1]),
        gt_ignore_flags=np.array([False]),
        gt_seg_map=seg,
        segments_info=[
            dict(id=7, category=1, is_thing=True),
            dict(id=8, category=1, is_thing=False),
            dict(id=9, category=3, is_thing=False)
        ])
    out = TRANSFORMS.build(dict(type='ClassAgnosticSegments', num_things_classes=2))(
        copy.deepcopy(results))
    assert isinstance(out['gt_masks'], BitmapMasks)
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, True, False])
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 0, 0])
    np.testing.assert_array_equal(out['gt_bboxes'],
                                  [[20, 12, 26, 16], [0, 10, 15, 20], [0, 0, 30, 10]])
    np.testing.assert_array_equal(out['gt_masks'].areas, [24, 150, 300])
    assert (out['gt_seg_map'] == 255).all()
    # without num_things_classes the crowd region is one more segment
    out = TRANSFORMS.build(dict(type='ClassAgnosticSegments'))(copy.deepcopy(results))
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, False, False])
    # recomputed boxes of HorizontalBoxes, things only: polygons stay
    results['gt_bboxes'] = HorizontalBoxes(np.array([[0, 0, 1, 1]], np.float32))
    out = TRANSFORMS.build(
        dict(type='ClassAgnosticSegments', with_stuff=False, recompute_bbox=True))(
            results)
    assert isinstance(out['gt_masks'], PolygonMasks)
    np.testing.assert_array_equal(out['gt_bboxes'].numpy(), [[20, 12, 26, 16]])


def test_agnostic_json_evaluates_perfect_proposals(coco):
    """The converted json + CocoMetric as in the configs: the ground-truth
    segments as predictions score mask AP and AR@100 of 1."""
    from mmdet.evaluation import CocoMetric
    from mmengine.fileio import load
    from pycocotools import mask as mask_utils
    agnostic = load(coco['agnostic_json'])
    assert agnostic['categories'] == [dict(id=1, name='object', supercategory='object')]
    assert len(agnostic['annotations']) == sum(len(i['segments']) for i in coco['images'])
    cfg = Config.fromfile(osp.join(REPO, M2F_CFG)).val_evaluator
    cfg.pop('type')
    metric = CocoMetric(**dict(cfg, ann_file=coco['agnostic_json']))
    metric.dataset_meta = dict(classes=('object', ))
    for image in agnostic['images']:
        anns = [a for a in agnostic['annotations'] if a['image_id'] == image['id']]
        masks = np.stack([mask_utils.decode(a['segmentation']) for a in anns])
        boxes = np.array([a['bbox'] for a in anns], np.float32)
        boxes[:, 2:] += boxes[:, :2]
        pred = dict(
            bboxes=torch.from_numpy(boxes),
            scores=torch.ones(len(anns)),
            labels=torch.zeros(len(anns), dtype=torch.long),
            masks=torch.from_numpy(masks).bool())
        metric.process({}, [
            dict(
                img_id=image['id'],
                pred_instances=pred,
                ori_shape=(image['height'], image['width']))
        ])
    results = metric.evaluate(len(agnostic['images']))
    assert results['coco/segm_mAP'] == 1.0 and results['coco/segm_AR@100'] == 1.0


def _use_synthetic(cfg, coco, work_dir):
    """Point the config's loaders and evaluator at the synthetic dataset."""
    cfg.work_dir = work_dir
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = coco['data_root']
    cfg.train_dataloader.dataset.update(
        ann_file=coco['ann_file'], data_prefix=coco['data_prefix'], metainfo=coco['metainfo'])
    cfg.val_dataloader.dataset.update(
        ann_file=coco['agnostic_json'], data_prefix=dict(img=coco['data_prefix']['img']))
    cfg.val_evaluator.ann_file = coco['agnostic_json']
    for step in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.dataset.pipeline:
        if step.type == 'ClassAgnosticSegments':
            step.num_things_classes = len(coco['thing_classes'])
        elif step.type in ('Resize', 'RandomResize'):
            step.scale = SIZE
        elif step.type == 'RandomCrop':
            step.crop_size = SIZE
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.default_hooks.checkpoint = None


def _train_and_validate(cfg):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and np.isfinite(losses).all()
    metrics = runner.val()
    assert 'coco/segm_mAP' in metrics and 'coco/segm_AR@100' in metrics
    return runner


@pytest.mark.slow
def test_mask2former_proposer_trains(coco, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, M2F_CFG))
    _use_synthetic(cfg, coco, str(tmp_path))
    cfg.model.data_preprocessor.batch_augments[0].size = SIZE
    shrink_mask2former(cfg.model)
    cfg.train_cfg.update(max_iters=2, val_interval=100, dynamic_intervals=None)
    runner = _train_and_validate(cfg)
    head = runner.model.panoptic_head
    assert head.num_things_classes == 1 and head.num_stuff_classes == 0
    assert head.cls_embed.out_features == 2  # object / no-object


@pytest.mark.slow
def test_mask_rcnn_proposer_trains(coco, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, MRCNN_CFG))
    _use_synthetic(cfg, coco, str(tmp_path))
    shrink_mask_rcnn(cfg.model)
    cfg.train_cfg.update(max_epochs=1, val_interval=100)
    runner = _train_and_validate(cfg)
    roi = runner.model.roi_head
    assert roi.bbox_head.fc_cls.out_features == 2  # object / background
    assert roi.bbox_head.fc_reg.out_features == 4
    assert roi.mask_head.conv_logits.out_channels == 1

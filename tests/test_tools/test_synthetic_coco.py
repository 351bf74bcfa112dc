# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The synthetic COCO-panoptic dataset reads like the real one in mmdet."""
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from synthetic_coco import write_coco_panoptic  # noqa: E402

NUM_IMAGES = 4
HEIGHT, WIDTH = 48, 64


def _pipeline(with_annotations: bool = True) -> list:
    pipeline = [dict(type='LoadImageFromFile')]
    if with_annotations:
        pipeline.append(
            dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True))
    pipeline.append(dict(type='PackDetInputs'))
    return pipeline


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """The written dataset's info and mmdet's ``CocoPanopticDataset`` on it."""
    from mmdet.registry import DATASETS
    root = tmp_path_factory.mktemp('coco')
    info = write_coco_panoptic(str(root), num_images=NUM_IMAGES, image_size=(HEIGHT, WIDTH))
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(
            dict(
                type='CocoPanopticDataset',
                data_root=info['data_root'],
                ann_file=info['ann_file'],
                data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
                metainfo=dict(
                    classes=info['classes'],
                    thing_classes=info['thing_classes'],
                    stuff_classes=info['stuff_classes']),
                pipeline=_pipeline()))
    return info, dataset


def _read_panoptic_png(path: str) -> np.ndarray:
    """Segment ids of a COCO-panoptic PNG: ``R + 256 G + 256^2 B``."""
    rgb = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def test_files_and_label_order(synthetic):
    info, dataset = synthetic
    assert info['classes'] == ('person', 'car', 'sky', 'grass')
    assert dataset.metainfo['classes'] == info['classes']
    # mmdet numbers categories in the json's order: things, then stuff.
    assert dataset.cat_ids == info['cat_ids']
    assert dataset.cat2label == info['cat2label']
    assert len(dataset) == NUM_IMAGES
    for image in info['images']:
        assert osp.isfile(osp.join(info['img_dir'], image['file_name']))
        seg_ids = _read_panoptic_png(osp.join(info['seg_dir'], image['seg_file_name']))
        assert seg_ids.shape == (HEIGHT, WIDTH)
        # Every pixel is labelled, areas and boxes match the json.
        assert sum(s['area'] for s in image['segments']) == HEIGHT * WIDTH
        labels = [s['label'] for s in image['segments']]
        assert set(range(2, 4)) <= set(labels)  # both stuff classes
        assert 1 <= sum(s['isthing'] for s in image['segments']) <= 3
        for seg in image['segments']:
            ys, xs = np.nonzero(seg_ids == seg['id'])
            assert len(ys) == seg['area']
            assert seg['bbox'] == [
                xs.min(), ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1
            ]


def test_dataset_sample_matches_drawing(synthetic):
    info, dataset = synthetic
    num_things = len(info['thing_classes'])
    index = max(
        range(NUM_IMAGES), key=lambda i: sum(s['isthing'] for s in info['images'][i]['segments']))
    image = info['images'][index]
    sample = dataset[index]
    data_sample = sample['data_samples']
    assert sample['inputs'].shape == (3, HEIGHT, WIDTH)
    assert data_sample.img_id == image['img_id']

    things = [s for s in image['segments'] if s['isthing']]
    gt = data_sample.gt_instances
    assert gt.labels.tolist() == [s['label'] for s in things]
    assert gt.masks.masks.shape == (len(things), HEIGHT, WIDTH)
    assert gt.masks.masks.sum(axis=(1, 2)).tolist() == [s['area'] for s in things]
    expected_boxes = [[x, y, x + w, y + h] for x, y, w, h in (s['bbox'] for s in things)]
    assert gt.bboxes.tensor.tolist() == expected_boxes

    seg_ids = _read_panoptic_png(osp.join(info['seg_dir'], image['seg_file_name']))
    sem_seg = data_sample.gt_sem_seg.sem_seg
    assert sem_seg.shape == (1, HEIGHT, WIDTH)
    sem_seg = sem_seg[0].numpy()
    assert not (sem_seg == 255).any()  # no unlabelled pixels
    for seg in image['segments']:
        region = seg_ids == seg['id']
        assert (sem_seg[region] == seg['label']).all()
        assert (seg['label'] >= num_things) == (not seg['isthing'])
    for k, thing in enumerate(things):
        assert (gt.masks.masks[k].astype(bool) == (seg_ids == thing['id'])).all()

    # Segments are visible in the image: each one is close to its class
    # colour (the JPEG is BGR in ``inputs``).
    img = sample['inputs'].numpy()[::-1].transpose(1, 2, 0).astype(float)
    palette = np.array(info['metainfo']['palette'], float)
    for seg in image['segments']:
        mean = img[seg_ids == seg['id']].mean(axis=0)
        distances = np.abs(palette - mean).max(axis=1)
        assert distances.argmin() == seg['label']
        assert distances[seg['label']] < 35


def _perfect_panoptic_prediction(data_sample) -> torch.Tensor:
    """``pred_panoptic_seg.sem_seg`` equal to the loaded ground truth."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    pan = data_sample.gt_sem_seg.sem_seg.clone().long()
    gt = data_sample.gt_instances
    for k, (label, mask) in enumerate(zip(gt.labels, gt.masks.masks)):
        pan[0][torch.from_numpy(mask.astype(bool))] = \
            int(label) + (k + 1) * INSTANCE_OFFSET
    return pan


def _evaluate_pq(info, dataset, corrupt: bool = False, **metric_kwargs):
    from mmdet.evaluation import CocoPanopticMetric
    metric = CocoPanopticMetric(seg_prefix=info['seg_dir'], **metric_kwargs)
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        data_sample = dataset[i]['data_samples']
        pan = _perfect_panoptic_prediction(data_sample)
        if corrupt and i == 0:
            # Label the two stuff classes the wrong way round.
            stuff = pan[0] >= len(info['thing_classes'])
            stuff &= pan[0] < len(info['classes'])
            pan[0][stuff] = 2 * len(info['thing_classes']) + 1 - pan[0][stuff]
        prediction = dict(
            img_id=data_sample.img_id,
            img_path=data_sample.img_path,
            ori_shape=data_sample.ori_shape,
            pred_panoptic_seg=dict(sem_seg=pan),
            segments_info=dataset.get_data_info(i)['segments_info'])
        metric.process({}, [prediction])
    return metric.evaluate(size=len(dataset))


@pytest.mark.parametrize('with_ann_file', [True, False])
def test_panoptic_metric_perfect_predictions(synthetic, with_ann_file):
    info, dataset = synthetic
    kwargs = dict(ann_file=info['panoptic_json']) if with_ann_file else {}
    results = _evaluate_pq(info, dataset, **kwargs)
    assert results['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert results['coco_panoptic/PQ_th'] == pytest.approx(100.0)
    assert results['coco_panoptic/PQ_st'] == pytest.approx(100.0)


def test_panoptic_metric_sees_wrong_labels(synthetic):
    info, dataset = synthetic
    results = _evaluate_pq(info, dataset, corrupt=True, ann_file=info['panoptic_json'])
    assert results['coco_panoptic/PQ_th'] == pytest.approx(100.0)
    assert results['coco_panoptic/PQ_st'] < 100.0


def test_instances_json_with_coco_metric(synthetic):
    """The instances json agrees with the panoptic one (``CocoMetric``)."""
    from mmdet.evaluation import CocoMetric
    info, dataset = synthetic
    metric = CocoMetric(ann_file=info['instances_json'], metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        data_sample = dataset[i]['data_samples']
        gt = data_sample.gt_instances
        prediction = dict(
            img_id=data_sample.img_id,
            ori_shape=data_sample.ori_shape,
            pred_instances=dict(
                bboxes=gt.bboxes.tensor,
                scores=torch.ones(len(gt)),
                labels=gt.labels,
                masks=torch.from_numpy(gt.masks.masks.astype(bool))))
        metric.process({}, [prediction])
    results = metric.evaluate(size=len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)

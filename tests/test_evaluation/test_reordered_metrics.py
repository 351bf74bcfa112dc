# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Predictions labelled by the ADE20K-150 panoptic classes (things first),
scored on the standard semantic maps and the instance json (standard order):
the remapping metrics against mmdet's own metrics on relabelled inputs."""
import json

import numpy as np
import pytest
import torch
from mmdet.datasets import ADE20KPanopticDataset, ADE20KSegDataset
from mmdet.evaluation import SemSegMetric
from pycocotools import mask as mask_utils

from mmmaskclip.datasets import ADE20K_150_CATEGORIES, ADE20K_150_CLASSES, label_map
from mmmaskclip.datasets.transforms import SetSegMapPath
from mmmaskclip.evaluation import ReorderedCocoMetric, ReorderedSemSegMetric

PANOPTIC = ADE20KPanopticDataset.METAINFO
PAN_TO_SEM = torch.tensor(label_map(PANOPTIC['classes'], ADE20K_150_CLASSES))


def test_ade20k_tables():
    """The standard order holds mmdet's panoptic names, things first in the
    panoptic json, and the same order of things and of stuff."""
    assert sorted(ADE20K_150_CLASSES) == sorted(PANOPTIC['classes'])
    things = [name for name, is_thing in ADE20K_150_CATEGORIES if is_thing]
    stuff = [name for name, is_thing in ADE20K_150_CATEGORIES if not is_thing]
    assert tuple(things) == PANOPTIC['thing_classes']
    assert tuple(stuff) == PANOPTIC['stuff_classes']
    assert len(ADE20KSegDataset.METAINFO['classes']) == 150
    # spot checks against the standard (semantic) order
    assert PAN_TO_SEM[PANOPTIC['classes'].index('wall')] == 0
    assert PAN_TO_SEM[PANOPTIC['classes'].index('bed')] == 7
    assert PAN_TO_SEM[PANOPTIC['classes'].index('flag')] == 149


def semseg_samples(seed=0, n=3):
    """GT in the standard order (255 ignored), noisy predictions."""
    g = torch.Generator().manual_seed(seed)
    gts, preds = [], []
    for _ in range(n):
        gt = torch.randint(0, 150, (1, 20, 24), generator=g)
        gt[:, :3] = 255
        pred = torch.where(
            torch.rand(gt.shape, generator=g) < 0.6, gt.clamp(max=149),
            torch.randint(0, 150, gt.shape, generator=g))
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def run_metric(metric, meta, samples):
    metric.dataset_meta = meta
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_semantic_from_panoptic_labels():
    gts, preds = semseg_samples()
    sem_to_pan = torch.empty(150, dtype=torch.long)
    sem_to_pan[PAN_TO_SEM] = torch.arange(150)
    reference = run_metric(
        SemSegMetric(iou_metrics=['mIoU']), dict(classes=ADE20KSegDataset.METAINFO['classes']), [
            dict(pred_sem_seg=dict(sem_seg=p), gt_sem_seg=dict(sem_seg=g))
            for p, g in zip(preds, gts)
        ])
    # the same predictions, labelled by the panoptic classes
    reordered = run_metric(
        ReorderedSemSegMetric(class_order='ade20k-150', iou_metrics=['mIoU']), dict(PANOPTIC), [
            dict(pred_sem_seg=dict(sem_seg=sem_to_pan[p]), gt_sem_seg=dict(sem_seg=g))
            for p, g in zip(preds, gts)
        ])
    assert reordered == reference
    assert 30 < reordered['mIoU'] < 90
    # without the remapping the score collapses (the check can fail)
    plain = run_metric(
        SemSegMetric(iou_metrics=['mIoU']), dict(PANOPTIC), [
            dict(pred_sem_seg=dict(sem_seg=sem_to_pan[p]), gt_sem_seg=dict(sem_seg=g))
            for p, g in zip(preds, gts)
        ])
    assert plain['mIoU'] < 0.5 * reordered['mIoU']


def rle(mask):
    code = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    code['counts'] = code['counts'].decode()
    return code


def instance_json(path):
    """Two images, three instances; category id = standard semantic index."""
    boxes = {
        'img0': [('bed', (2, 12, 3, 20)), ('person', (14, 30, 5, 15))],
        'img1': [('window', (0, 10, 0, 10))]
    }
    anns, images = [], []
    for img_id, objects in boxes.items():
        images.append(dict(id=img_id, file_name=img_id + '.jpg', height=32, width=32))
        for name, (y0, y1, x0, x1) in objects:
            mask = np.zeros((32, 32), bool)
            mask[y0:y1, x0:x1] = True
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=img_id,
                    category_id=ADE20K_150_CLASSES.index(name),
                    segmentation=rle(mask),
                    area=float(mask.sum()),
                    iscrowd=0,
                    bbox=[x0, y0, x1 - x0, y1 - y0],
                    mask=mask))
    cats = [dict(id=i, name=name) for i, (name, thing) in enumerate(ADE20K_150_CATEGORIES) if thing]
    with open(path, 'w') as f:
        json.dump(
            dict(
                images=images,
                annotations=[{
                    k: v
                    for k, v in a.items() if k != 'mask'
                } for a in anns],
                categories=cats), f)
    return anns


def predictions(anns, rename=None):
    by_image = {}
    for ann in anns:
        name = PANOPTIC['classes'][0] if rename == ann['id'] else \
            ADE20K_150_CLASSES[ann['category_id']]
        by_image.setdefault(ann['image_id'], []).append(
            (PANOPTIC['thing_classes'].index(name), ann['mask'], ann['bbox']))
    samples = []
    for img_id, objects in by_image.items():
        labels, masks, boxes = zip(*objects)
        samples.append(
            dict(
                img_id=img_id,
                ori_shape=(32, 32),
                pred_instances=dict(
                    labels=torch.tensor(labels),
                    scores=torch.ones(len(labels)),
                    masks=torch.from_numpy(np.stack(masks)),
                    bboxes=torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes]).float())))
    return samples


def test_instances_from_panoptic_labels(tmp_path):
    path = str(tmp_path / 'ade20k_instance_val.json')
    anns = instance_json(path)
    perfect = run_metric(
        ReorderedCocoMetric(class_order='ade20k-150', ann_file=path, metric=['segm']),
        dict(PANOPTIC), predictions(anns))
    assert perfect['coco/segm_mAP'] == pytest.approx(1.0)
    wrong = run_metric(
        ReorderedCocoMetric(class_order='ade20k-150', ann_file=path, metric=['segm']),
        dict(PANOPTIC), predictions(anns, rename=anns[1]['id']))
    assert wrong['coco/segm_mAP'] < 0.8
    with pytest.raises(ValueError, match='ann_file'):
        ReorderedCocoMetric(class_order='ade20k-150')


def test_set_seg_map_path():
    results = SetSegMapPath('../../annotations/validation')(
        dict(img_path='data/ADE/images/validation/ADE_val_1.jpg'))
    assert results['seg_map_path'] == 'data/ADE/annotations/validation/ADE_val_1.png'
    absolute = SetSegMapPath('/maps', '.tif')(dict(img_path='a/b/x.jpg'))
    assert absolute['seg_map_path'] == '/maps/x.tif'


def test_shipped_uint16_benchmarks_ignore_65535():
    """The A-847 and PC-459 configs' evaluator ignores what the ground truth
    marks ignored (65535), with no help from the model: a prediction right
    on every labelled pixel scores 100, whatever it says on ignored ones."""
    import os.path as osp

    from mmdet.registry import METRICS
    from mmengine.config import Config
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    for name, classes in (('ade20k-847', 847), ('pascal-context-459', 459)):
        cfg = Config.fromfile(
            osp.join(repo, f'configs/maskclip/maskclip_vit-l-14-336_{name}-semantic.py'))
        metric = METRICS.build(cfg.test_evaluator)
        metric.dataset_meta = dict(classes=[str(i) for i in range(classes)])
        gt = torch.randint(0, classes, (1, 16, 20))
        gt[:, :4] = 65535
        pred = gt.clone()
        pred[:, :4] = 3  # anything on the ignored pixels
        metric.process({}, [
            dict(pred_sem_seg=dict(sem_seg=pred), gt_sem_seg=dict(sem_seg=gt, ignore_index=65535))
        ])
        assert metric.evaluate(1)['mIoU'] == 100.0, name

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The fix of mmdet's ade20k2coco.py quirks: boxes from the PNGs, names
stripped; mmdet's dataset then keeps every segment."""
import json
import os.path as osp

from conftest import load_script
from synthetic_coco import write_coco_panoptic


def test_boxes_recomputed_and_names_stripped(tmp_path):
    data = write_coco_panoptic(
        str(tmp_path / 'ade'), num_images=2, image_size=(40, 56), split='val')
    truth = {s['id']: s['bbox'] for img in data['images'] for s in img['segments']}
    with open(data['panoptic_json']) as f:
        pan = json.load(f)
    for ann in pan['annotations']:  # ade20k2coco's stale-x boxes
        for seg in ann['segments_info']:
            seg['bbox'] = [seg['bbox'][0] + 7, seg['bbox'][1], -3, seg['bbox'][3]]
    with open(data['panoptic_json'], 'w') as f:
        json.dump(pan, f)
    with open(data['instances_json']) as f:
        ins = json.load(f)
    for cat in ins['categories']:
        cat['name'] = f"{cat['name']}  "
    with open(data['instances_json'], 'w') as f:
        json.dump(ins, f)

    tool = load_script('tools/dataset_converters/ade20k_coco_fix.py')
    png_dir = osp.join(data['data_root'], data['data_prefix']['seg'])
    assert tool.fix_panoptic(data['panoptic_json'], png_dir) == len(truth)
    with open(data['panoptic_json']) as f:
        fixed = json.load(f)
    for ann in fixed['annotations']:
        for seg in ann['segments_info']:
            assert seg['bbox'] == truth[seg['id']]
    assert osp.isfile(data['panoptic_json'][:-5] + '.orig.json')
    assert tool.fix_instance_json(data['instances_json']) == (len(ins['categories']), 0)
    with open(data['instances_json']) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    assert names == [n.strip() for n in names] and all(names)


def test_annotation_ids_from_one_make_perfect_detections_perfect(tmp_path):
    """ade20k2coco.py numbers instance annotations from 0; COCOeval then takes
    the detection matched to annotation 0 for a false positive."""
    import numpy as np
    import torch
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    data = write_coco_panoptic(
        str(tmp_path / 'ade'), num_images=1, image_size=(40, 56), split='val')
    with open(data['instances_json']) as f:
        ins = json.load(f)
    for i, ann in enumerate(ins['annotations']):
        ann['id'] = i  # as ade20k2coco.py writes them
    with open(data['instances_json'], 'w') as f:
        json.dump(ins, f)
    anns = ins['annotations']
    coco = COCO(data['instances_json'])
    masks = np.stack([coco.annToMask(a) for a in anns])
    labels = [data['cat_ids'].index(a['category_id']) for a in anns]
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
    prediction = dict(
        img_id=anns[0]['image_id'],
        ori_shape=(40, 56),
        pred_instances=dict(
            labels=torch.tensor(labels),
            scores=torch.ones(len(anns)),
            masks=torch.from_numpy(masks).bool(),
            bboxes=torch.tensor(boxes).float()))

    def segm_map():
        metric = CocoMetric(ann_file=data['instances_json'], metric=['segm'])
        metric.dataset_meta = dict(classes=data['thing_classes'])
        metric.process({}, [prediction])
        return metric.evaluate(1)['coco/segm_mAP']

    assert segm_map() < 0.99
    tool = load_script('tools/dataset_converters/ade20k_coco_fix.py')
    assert tool.fix_instance_json(data['instances_json']) == (0, len(anns))
    assert segm_map() == 1.0

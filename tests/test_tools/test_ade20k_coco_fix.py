# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The fix of mmdet's ade20k2coco.py quirks: boxes from the PNGs, names
stripped; mmdet's dataset then keeps every segment."""
import json
import os.path as osp

from conftest import load_script
from synthetic_coco import write_coco_panoptic


def test_boxes_recomputed_and_names_stripped(tmp_path):
    data = write_coco_panoptic(str(tmp_path / 'ade'), num_images=2, image_size=(40, 56),
                               split='val')
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
    assert tool.fix_instance_names(data['instances_json']) == len(ins['categories'])
    with open(data['instances_json']) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    assert names == [n.strip() for n in names] and all(names)

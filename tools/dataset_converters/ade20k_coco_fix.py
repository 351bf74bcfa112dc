# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Make three quirks of mmdet's ``ade20k2coco.py`` output harmless.

1. Panoptic json: the box of every segment after the first of an image is
   computed from the previous segment's ``x`` (``x = hor_idx[-1] - x + 1``),
   so boxes are wrong and some widths fall below 1. PQ is unaffected (it reads
   the PNGs), but mmdet's ``CocoPanopticDataset`` drops segments with
   ``w < 1`` from ``gt_instances``: ground-truth proposals (Table 7) would miss
   them. This tool recomputes every box from the panoptic PNG.
2. Instance json: category names may carry padding spaces, so they do not
   resolve against ``ADE20KInstanceDataset``'s class names. They are stripped.
3. Instance json: annotation ids start at 0, and pycocotools' ``COCOeval``
   counts a detection matched to annotation id 0 as a false positive (it
   stores matches by id, 0 meaning "none"): two perfect detections score AP
   0.25. Ids are shifted to start at 1.

Run once after mmdet's converter (files are rewritten in place, the originals
kept as ``*.orig.json``)::

    python tools/dataset_converters/ade20k_coco_fix.py data/ADEChallengeData2016
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import List, Optional, Tuple

import numpy as np
from mmengine.utils import track_progress

try:
    from mmmaskclip.utils import read_image, read_json, run_cli
except ModuleNotFoundError as err:  # not installed: use this checkout
    if err.name != 'mmmaskclip':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))))
    from mmmaskclip.utils import read_image, read_json, run_cli


def rgb2id(png: np.ndarray) -> np.ndarray:
    """COCO-panoptic PNG ``(H, W, 3)`` -> segment ids ``R + 256 G + 256² B``."""
    png = png.astype(np.int64)
    return png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]


def segment_boxes(ids: np.ndarray, segment_ids: List[int]) -> List[List[int]]:
    """Tight ``[x, y, w, h]`` of each segment id in an id map."""
    boxes = []
    for seg_id in segment_ids:
        ys, xs = np.nonzero(ids == seg_id)
        if len(xs) == 0:
            boxes.append([0, 0, 0, 0])
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        boxes.append([x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1])
    return boxes


def _fix_annotation(task) -> dict:
    ann, png_dir = task
    ids = rgb2id(read_image(osp.join(png_dir, ann['file_name']), what='panoptic PNG'))
    boxes = segment_boxes(ids, [s['id'] for s in ann['segments_info']])
    for seg, box in zip(ann['segments_info'], boxes):
        seg['bbox'] = box
    return ann


def _rewrite(path: str, data: dict) -> None:
    backup = path[:-len('.json')] + '.orig.json'
    if not osp.exists(backup):
        shutil.copyfile(path, backup)
    with open(path, 'w') as f:
        json.dump(data, f)


def fix_panoptic(json_path: str, png_dir: str, nproc: int = 1) -> int:
    """Recompute every segment box of a panoptic json; returns how many changed."""
    data = read_json(json_path, 'panoptic json')
    before = [[s['bbox'] for s in a['segments_info']] for a in data['annotations']]
    tasks = [(a, png_dir) for a in data['annotations']]
    data['annotations'] = track_progress(_fix_annotation, tasks, nproc=nproc) \
        if nproc > 1 else [_fix_annotation(t) for t in tasks]
    after = [[s['bbox'] for s in a['segments_info']] for a in data['annotations']]
    _rewrite(json_path, data)
    return sum(b != a for bs, as_ in zip(before, after) for b, a in zip(bs, as_))


def fix_instance_json(json_path: str) -> Tuple[int, int]:
    """Strip the category names of an instance json and make its annotation
    ids start at 1; returns how many names and ids changed."""
    data = read_json(json_path, 'instance json')
    names = 0
    for cat in data['categories']:
        name = cat['name'].strip()
        names += name != cat['name']
        cat['name'] = name
    ids = [ann['id'] for ann in data['annotations']]
    shift = 1 - min(ids) if ids and min(ids) < 1 else 0
    for ann in data['annotations']:
        ann['id'] += shift
    _rewrite(json_path, data)
    return names, len(ids) if shift else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Fix the splits; an unusable input is one line ``prog: error: ...``,
    exit 2."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('data_root', help='ADEChallengeData2016 (after ade20k2coco.py)')
    parser.add_argument('--splits', nargs='+', default=['val'], choices=['train', 'val'])
    parser.add_argument('--nproc', type=int, default=1)
    args = parser.parse_args(argv)
    return run_cli(osp.basename(__file__), lambda: fix(args))


def fix(args: argparse.Namespace) -> int:
    """Fix the jsons of ``args.splits`` under ``args.data_root``."""
    if not osp.isdir(args.data_root):
        raise FileNotFoundError(2, 'No such folder', args.data_root)
    for split in args.splits:
        pan = osp.join(args.data_root, f'ade20k_panoptic_{split}.json')
        if osp.isfile(pan):
            n = fix_panoptic(pan, osp.join(args.data_root, f'ade20k_panoptic_{split}'), args.nproc)
            print(f'{pan}: {n} segment boxes recomputed')
        ins = osp.join(args.data_root, f'ade20k_instance_{split}.json')
        if osp.isfile(ins):
            names, ids = fix_instance_json(ins)
            print(f'{ins}: {names} category names stripped, {ids} annotation ids shifted')
        if not (osp.isfile(pan) or os.path.isfile(ins)):
            print(f'nothing to fix for {split} in {args.data_root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

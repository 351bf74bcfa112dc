# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Write a class-agnostic COCO instances json from a COCO-panoptic one.

Every segment of the panoptic annotation, thing or stuff, becomes one
instance (RLE mask, tight box, area) of the single category
``{'id': 1, 'name': 'object'}``; crowd segments keep ``iscrowd=1`` so that
COCOeval ignores detections on them. mmdet's ``CocoMetric`` on this json,
with a dataset whose ``metainfo`` is ``dict(classes=('object', ))``,
measures the class-agnostic mask AP / AR of a mask proposal network
(configs/proposals)::

    python tools/dataset_converters/coco_panoptic2agnostic.py \\
        data/coco/annotations/panoptic_val2017.json
    # -> data/coco/annotations/panoptic_val2017_class-agnostic.json

The panoptic PNGs are read from ``--seg-dir`` (default: the json path
without ``.json``, as COCO ships them).
"""
import argparse
import json
import os.path as osp
import sys
from functools import partial
from typing import List, Optional

import mmengine
import numpy as np
from pycocotools import mask as mask_utils

try:
    from mmmaskclip.utils import read_image, read_json, run_cli
except ModuleNotFoundError as err:  # not installed: use this checkout
    if err.name != 'mmmaskclip':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))))
    from mmmaskclip.utils import read_image, read_json, run_cli

OBJECT_CATEGORY = dict(id=1, name='object', supercategory='object')


def rgb2id(png: np.ndarray) -> np.ndarray:
    """COCO-panoptic segment ids of an RGB PNG (``R + 256 G + 256^2 B``)."""
    png = png.astype(np.uint32)
    return png[..., 0] + 256 * png[..., 1] + 256 * 256 * png[..., 2]


def convert_image(ann: dict, seg_dir: str, stuff_ids: set, with_stuff: bool = True) -> List[dict]:
    """Class-agnostic instances (without ``id``) of one panoptic annotation.

    Args:
        ann (dict): One entry of the panoptic json's ``annotations``.
        seg_dir (str): Folder of the panoptic PNGs.
        stuff_ids (set[int]): Category ids with ``isthing=0``.
        with_stuff (bool): Keep the stuff segments. Defaults to True.

    Returns:
        list[dict]: COCO instance annotations, category 1.
    """
    png = read_image(osp.join(seg_dir, ann['file_name']), what='panoptic PNG')
    id_map = rgb2id(png)
    instances = []
    for seg in ann['segments_info']:
        if not with_stuff and seg['category_id'] in stuff_ids:
            continue
        mask = id_map == seg['id']
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle['counts'] = rle['counts'].decode('ascii')
        instances.append(
            dict(
                image_id=ann['image_id'],
                category_id=OBJECT_CATEGORY['id'],
                segmentation=rle,
                area=float(mask.sum()),
                bbox=[float(x0),
                      float(y0),
                      float(xs.max() - x0 + 1),
                      float(ys.max() - y0 + 1)],
                iscrowd=int(seg.get('iscrowd', 0))))
    return instances


def convert(panoptic_json: str,
            out_file: Optional[str] = None,
            seg_dir: Optional[str] = None,
            with_stuff: bool = True,
            nproc: int = 1) -> str:
    """Convert ``panoptic_json`` and write the class-agnostic json.

    Args:
        panoptic_json (str): COCO-panoptic annotation file.
        out_file (str, optional): Output path. Defaults to
            ``<panoptic_json without .json>_class-agnostic.json``.
        seg_dir (str, optional): Folder of the panoptic PNGs. Defaults to
            ``panoptic_json`` without ``.json``.
        with_stuff (bool): Keep the stuff segments. Defaults to True.
        nproc (int): Worker processes. Defaults to 1.

    Returns:
        str: The output path.
    """
    stem = osp.splitext(panoptic_json)[0]
    out_file = out_file or f'{stem}_class-agnostic.json'
    seg_dir = seg_dir or stem
    panoptic = read_json(panoptic_json, 'panoptic json')
    stuff_ids = {c['id'] for c in panoptic['categories'] if not c.get('isthing', 1)}
    worker = partial(convert_image, seg_dir=seg_dir, stuff_ids=stuff_ids, with_stuff=with_stuff)
    if nproc > 1:
        per_image = mmengine.track_parallel_progress(worker, panoptic['annotations'], nproc)
    else:
        per_image = mmengine.track_progress(worker, panoptic['annotations'])
    annotations = []
    for instances in per_image:
        for inst in instances:
            inst['id'] = len(annotations) + 1
            annotations.append(inst)
    out = dict(
        info=dict(
            panoptic.get('info', {}),
            description=f'class-agnostic segments of {osp.basename(panoptic_json)}'),
        licenses=panoptic.get('licenses', []),
        images=panoptic['images'],
        annotations=annotations,
        categories=[dict(OBJECT_CATEGORY)])
    mmengine.mkdir_or_exist(osp.dirname(osp.abspath(out_file)))
    with open(out_file, 'w', encoding='utf-8') as f:
        json.dump(out, f)
    print(f'{len(annotations)} segments of {len(out["images"])} images -> {out_file}')
    return out_file


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO-panoptic json -> class-agnostic COCO instances json')
    parser.add_argument('panoptic_json', help='e.g. data/coco/annotations/panoptic_val2017.json')
    parser.add_argument('--out', help='output json (default: <input>_class-agnostic.json)')
    parser.add_argument('--seg-dir', help='panoptic PNG folder (default: <input> without .json)')
    parser.add_argument(
        '--things-only',
        action='store_true',
        help='drop the stuff segments (as ClassAgnosticSegments(with_stuff=False))')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert; an unusable input is one line ``prog: error: ...``, exit 2."""
    args = parse_args(argv)

    def run() -> int:
        convert(
            args.panoptic_json,
            args.out,
            args.seg_dir,
            with_stuff=not args.things_only,
            nproc=args.nproc)
        return 0

    return run_cli(osp.basename(__file__), run)


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Write the constrained-setting jsons of the COCO 48/17 split (XPM).

mmdet's ``coco2ovd.py`` writes only the generalized-setting val json
(``instances_val2017_all_2.json``). XPM's constrained setting also scores
each split alone, with its own vocabulary, on the images holding it; this
tool writes those jsons from the standard ``instances_val2017.json``::

    python tools/dataset_converters/coco_ovd_constrained.py \\
        data/coco/annotations/instances_val2017.json
    # -> data/coco/annotations/instances_val2017_novel_17.json
    #    data/coco/annotations/instances_val2017_base_48.json

Each keeps the split's categories (COCO order), all their annotations
(crowd ones included) and the images with at least one of them: the rule of
OVR-CNN's preparation script, whose ``instances_val2017_unseen_2.json`` /
``instances_val2017_seen_2.json`` XPM evaluates (those also carry word
embeddings per category, not needed here). ``--splits all`` also writes the
generalized ``instances_val2017_all_65.json`` (the same images and
annotations as ``coco2ovd.py``'s ``instances_val2017_all_2.json``).

``CocoOVDDataset`` does not need these files: it applies the same filter to
the standard json when it loads. They are an explicit, reproducible
artifact: a metric ``ann_file`` identical to the protocol's, a file to share
or to check image counts against, and input for other codebases.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import mmengine

from mmmaskclip.datasets.coco_ovd import COCO_OVD_SPLITS, coco_ovd_json_name, filter_coco_split
from mmmaskclip.utils import read_json, run_cli

SPLITS = ('novel', 'base')


def convert(ann_file: str,
            out_dir: Optional[str] = None,
            splits: Sequence[str] = SPLITS) -> Dict[str, str]:
    """Write one json per split of the COCO 48/17 split.

    Args:
        ann_file (str): A COCO instances json, e.g. ``instances_val2017.json``.
        out_dir (str, optional): Output folder. Defaults to None: the folder
            of ``ann_file``.
        splits (Sequence[str]): Any of ``'novel'``, ``'base'``, ``'all'``.
            Defaults to ``('novel', 'base')``.

    Returns:
        dict[str, str]: Output path of each split.
    """
    for split in splits:
        if split not in COCO_OVD_SPLITS:
            raise ValueError(f'split must be in {tuple(COCO_OVD_SPLITS)}, '
                             f'got {split!r}')
    coco = read_json(ann_file, 'COCO instances json')
    out_dir = out_dir or osp.dirname(osp.abspath(ann_file))
    mmengine.mkdir_or_exist(out_dir)
    stem = osp.splitext(osp.basename(ann_file))[0]
    paths = {}
    for split in splits:
        classes = COCO_OVD_SPLITS[split]
        print(f'{split}: {len(classes)} classes')
        out = filter_coco_split(coco, classes, progress=True)
        out['info'] = dict(
            coco.get('info') or {},
            description=f'COCO 48/17 open-vocabulary split, {split} '
            f'({len(classes)} classes), of {osp.basename(ann_file)}')
        paths[split] = osp.join(out_dir, coco_ovd_json_name(stem, split))
        with open(paths[split], 'w', encoding='utf-8') as f:
            json.dump(out, f)
        print(f'\n{len(out["annotations"])} annotations of '
              f'{len(out["images"])} images -> {paths[split]}')
    return paths


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO instances json -> constrained-setting jsons of the '
        'COCO 48/17 open-vocabulary split')
    parser.add_argument('ann_file', help='e.g. data/coco/annotations/instances_val2017.json')
    parser.add_argument('--out-dir', help='output folder (default: that of ann_file)')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=list(SPLITS),
        choices=list(COCO_OVD_SPLITS),
        help='splits to write (default: novel base)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert; an unusable input is one line ``prog: error: ...``, exit 2."""
    args = parse_args(argv)

    def run() -> int:
        convert(args.ann_file, args.out_dir, args.splits)
        return 0

    return run_cli(osp.basename(__file__), run)


if __name__ == '__main__':
    sys.exit(main())

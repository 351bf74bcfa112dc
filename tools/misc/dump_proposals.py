# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Run a proposer over a dataset split and store its proposals on disk.

The directory it writes is what ``PrecomputedProposer`` reads (format:
``mmmaskclip/models/proposers/precomputed.py``; the work is
``mmmaskclip.apis.dump_proposals``): one ``<image stem>.npz`` per image with
uint8-quantised mask logits at ``--scale`` of the original image size (plus
objectness where the proposer has it) and ``meta.json``.

Examples::

    # the model.proposer of a MaskCLIP config over its test split
    python tools/misc/dump_proposals.py CONFIG --out-dir data/proposals/val
    # the training split, through the test pipeline (no random augmentation)
    python tools/misc/dump_proposals.py CONFIG --split train \\
        --out-dir data/proposals/train --resume
    # another proposer (a config file with `proposer = dict(...)` or
    # `model = dict(proposer=...)`)
    python tools/misc/dump_proposals.py CONFIG --proposer-config P.py ...

then train/test with a config that replaces the proposer::

    _base_ = ['CONFIG']
    model = dict(proposer=dict(_delete_=True, type='PrecomputedProposer',
                               proposal_dir='data/proposals/val'))

The reading pipeline may resize and flip (the stored proposals follow
``img_shape`` and ``flip``) but not crop.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))
from tool_common import import_mmmaskclip

SPLITS = ('test', 'val', 'train')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'config',
        help='a MaskCLIP config (datasets, data preprocessor, '
        'and its model.proposer unless --proposer-config)')
    parser.add_argument('--out-dir', required=True, help='the proposal directory')
    parser.add_argument(
        '--split',
        choices=SPLITS,
        default='test',
        help="the config's <split>_dataloader; 'train' runs the test "
        'pipeline over the training dataset')
    parser.add_argument(
        '--proposer-config',
        help='config file with `proposer = dict(...)` (or model.proposer) '
        "to run instead of CONFIG's")
    parser.add_argument(
        '--scale',
        type=float,
        default=0.25,
        help='stored resolution relative to the original image')
    parser.add_argument(
        '--logit-range',
        type=float,
        default=8.0,
        help='clamp logits to +-this before 8-bit quantisation')
    parser.add_argument('--max-proposals', type=int, help='keep at most this many per image')
    parser.add_argument(
        '--key',
        choices=('stem', 'img_id'),
        default='stem',
        help='file name of an image: its file stem or its img_id')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='skip images whose proposal file exists and is complete (corrupt or '
        'truncated ones are rewritten)')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override entries of CONFIG, e.g. model.proposer.num_proposals=50')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for path in filter(None, (args.config, args.proposer_config)):
        if not osp.isfile(path):
            print(f'dump_proposals.py: error: config file not found: {path}', file=sys.stderr)
            return 2
    import_mmmaskclip(__file__)
    import torch

    from mmmaskclip.apis import dump_proposals, proposer_cfg_of
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    proposer = (
        proposer_cfg_of(Config.fromfile(args.proposer_config)) if args.proposer_config else None)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    summary = dump_proposals(
        cfg,
        args.out_dir,
        split=args.split,
        proposer=proposer,
        scale=args.scale,
        logit_range=args.logit_range,
        max_proposals=args.max_proposals,
        key=args.key,
        resume=args.resume,
        device=device,
        batch_size=args.batch_size,
        num_workers=args.num_workers)
    print(f"{summary['written']} written, {summary['skipped']} already there, "
          f"{summary['total']} images in {os.path.abspath(args.out_dir)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())

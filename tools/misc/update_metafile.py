# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Rewrite configs/maskclip/metafile.yml from the configs in that folder.

Every config gets one entry; what it needs (training data, weights) follows
from its name: ``maskclip_*`` needs a MaskCLIP checkpoint (trained by the
``*_8xb1-10k_coco-panoptic`` recipe), the other variants are training-free.

    python tools/misc/update_metafile.py           # rewrite the metafile
    python tools/misc/update_metafile.py --check   # exit 1 if it is out of date
"""
import argparse
import glob
import os.path as osp
import sys
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLIP_WEIGHTS = ('https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499'
                '208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt')
HEADER = '''Collections:
  - Name: MaskCLIP
    Metadata:
      Architecture:
        - CLIP ViT-L/14@336px
        - Mask Class Tokens
        - Relative Mask Attention
    Paper:
      URL: https://arxiv.org/abs/2208.08984
      Title: 'Open-Vocabulary Universal Image Segmentation with MaskCLIP'
    README: configs/maskclip/README.md

Models:'''


def entry(name: str) -> str:
    if '_8xb1-10k_coco-panoptic' in name:
        data, resources = 'COCO panoptic (train2017)', '8 GPUs (the paper used 8x A5000, 3 h)'
        weights = 'none released by this project yet (train with the config)'
    elif name.startswith('maskclip_'):
        data, resources = 'COCO panoptic (a checkpoint of the 10k recipe)', 'none (test only)'
        weights = 'none released by this project yet'
    else:
        data, resources = 'none (training-free; frozen OpenAI CLIP)', 'none'
        weights = CLIP_WEIGHTS
    return (f'  - Name: {name}\n    In Collection: MaskCLIP\n'
            f'    Config: configs/maskclip/{name}.py\n    Metadata:\n'
            f'      Training Data: {data}\n      Training Resources: {resources}\n'
            f'    Results: []\n    Weights: {weights}')


def metafile_text(config_dir: str) -> str:
    """The metafile listing every ``*.py`` config of ``config_dir``."""
    names = sorted(
        osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(config_dir, '*.py')))
    return '\n'.join([HEADER] + [entry(n) for n in names]) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Rewrite configs/maskclip/metafile.yml from the configs in that folder.')
    parser.add_argument(
        '--check',
        action='store_true',
        help='write nothing; exit with status 1 if the metafile is out of date')
    parser.add_argument(
        '--config-dir',
        default=osp.join(REPO, 'configs', 'maskclip'),
        help='folder of the configs; its metafile.yml is rewritten (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    path = osp.join(args.config_dir, 'metafile.yml')
    text = metafile_text(args.config_dir)
    if args.check:
        current = open(path, encoding='utf-8').read() if osp.isfile(path) else ''
        if current != text:
            print(f'{path} is out of date: run python tools/misc/update_metafile.py')
            return 1
        print(f'{path} is up to date')
        return 0
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'{text.count("  - Name: ") - 1} configs listed in {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

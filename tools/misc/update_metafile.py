# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Rewrite configs/maskclip/metafile.yml from the configs in that folder.

Every config gets one entry; what it needs (training data, weights) follows
from its name: ``maskclip_*`` needs a MaskCLIP checkpoint (trained by the
``*_8xb1-10k_coco-panoptic`` recipe), the other variants are training-free.

    python tools/misc/update_metafile.py
"""
import glob
import os.path as osp

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


def main() -> None:
    names = sorted(osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(REPO, 'configs', 'maskclip', '*.py')))
    with open(osp.join(REPO, 'configs', 'maskclip', 'metafile.yml'), 'w') as f:
        f.write('\n'.join([HEADER] + [entry(n) for n in names]) + '\n')
    print(f'{len(names)} configs listed')


if __name__ == '__main__':
    main()

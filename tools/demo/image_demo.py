# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Segment images for any vocabulary and draw the result (the full pipeline:
class-agnostic proposals -> MaskCLIP -> panoptic / semantic / instance).

Examples::

    # training-free MaskCLIP w/o RMA with OpenAI CLIP + model-zoo Mask2Former
    python tools/demo/image_demo.py demo/scene.png --texts house tree \
        --stuff-texts sky grass --out-dir outputs
    # a dataset's vocabulary plus your own names
    python tools/demo/image_demo.py demo/scene.png --vocab ade20k --texts "toy rabbit"
    # a trained MaskCLIP
    python tools/demo/image_demo.py IMG --texts "toy rabbit" rabbit --config \
        configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py \
        --weights work_dirs/maskclip/iter_10000.pth --task instance

Pictures go to ``OUT_DIR/vis/``; ``--random-weights`` runs offline with random
CLIP and proposer weights (the pipeline runs, the labels are meaningless).
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'maskclip',
                          'maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py')
TASKS = ('panoptic', 'semantic', 'instance')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument(
        '--vocab',
        nargs='*',
        default=[],
        help='vocabulary presets (coco, coco-stuff, ade20k, ade20k-full, pascal-context-59, '
        'pascal-context-459, lvis) and/or files of names (one a line, "name: stuff" for '
        'stuff; or JSON {"things": [...], "stuff": [...]})')
    parser.add_argument(
        '--texts',
        nargs='*',
        default=[],
        help='thing class names (commas inside a name join synonyms)')
    parser.add_argument(
        '--stuff-texts',
        nargs='*',
        default=[],
        help='stuff class names (one segment per class in panoptic)')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='MaskCLIP config')
    parser.add_argument(
        '--weights', default=None, help='MaskCLIP checkpoint (none for training-free configs)')
    parser.add_argument(
        '--task', choices=TASKS, default='panoptic', help='which segmentation to draw')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--device', default=None)
    parser.add_argument(
        '--void-pixels',
        action='store_true',
        help='semantic: leave pixels unlabelled where the void class wins (small vocabularies)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='instances scoring below are not drawn')
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='random CLIP and proposer weights: runs offline, '
        'predictions are meaningless')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmmaskclip  # noqa: F401
    from mmmaskclip.apis import MaskCLIPInferencer, build_vocabulary
    try:
        vocabulary = build_vocabulary(args.vocab, args.texts, args.stuff_texts)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f'error: {err} (use --vocab, --texts and/or --stuff-texts)', file=sys.stderr)
        return 2
    from mmmaskclip.models import CLIPWeightsNotFoundError
    from mmmaskclip.models.proposers import ProposerWeightsNotFoundError
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if args.random_weights:
        cfg.model.clip.pretrained = None
        if 'checkpoint' in cfg.model.proposer:
            cfg.model.proposer.checkpoint = None
    post = cfg.model.setdefault('post_processor', dict(type='UniversalPostProcessor'))
    post.update({f'{t}_on': t == args.task for t in TASKS})
    if args.void_pixels:
        post.update(semantic_void_label=255)
    try:
        inferencer = MaskCLIPInferencer(cfg, weights=args.weights, device=args.device)
    except (CLIPWeightsNotFoundError, ProposerWeightsNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    out = inferencer(
        args.inputs,
        texts=list(vocabulary.things),
        stuff_texts=list(vocabulary.stuff),
        out_dir=args.out_dir,
        pred_score_thr=args.score_thr,
        return_datasamples=True)
    print(f"segmented {len(out['predictions'])} image(s); pictures in "
          f"{osp.join(args.out_dir, 'vis')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())

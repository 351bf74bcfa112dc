# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Label the masks of an image with any vocabulary and draw the result.

Example::

    python tools/demo/mask_classification_demo.py demo/scene.png demo/scene_masks.png \
        --vocab sky grass sun house roof tree --out outputs/scene_labelled.png
    # mixed precision on a GPU
    python tools/demo/mask_classification_demo.py IMG MASKS --vocab cat dog \
        --device cuda:0 --dtype bfloat16

Masks come from a label-map PNG (every non-zero value is one mask), a
COCO-panoptic PNG, or a ``.npy``/``.npz`` of ``(M, H, W)`` masks whose
values ``--mask-type`` reads (see
``mmmaskclip.apis.mask_inputs.load_mask_logits``): ``binary`` (non-zero is
inside), ``prob`` (probabilities, inside where >= 0.5), ``logit`` (inside
where >= 0) or ``auto`` (the default: booleans, integers and 0/1 floats are
binary, other floats in [0, 1] probabilities, any other floats logits).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

#: MaskCLIP w/o RMA (training-free); any MaskCLIP config works.
DEFAULT_CONFIG = 'mmmaskclip::maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('masks', help='label-map PNG, COCO-panoptic PNG, or .npy/.npz masks')
    parser.add_argument(
        '--vocab',
        nargs='+',
        required=True,
        help='class names; commas inside one name join synonyms')
    parser.add_argument(
        '--mask-type',
        choices=('auto', 'binary', 'prob', 'logit'),
        default='auto',
        help='how .npy/.npz mask values are read: binary (non-zero inside), prob (>= 0.5 '
        'inside), logit (>= 0 inside); auto: bool/int/0-1 floats binary, other floats in '
        '[0, 1] prob, other floats logit')
    parser.add_argument(
        '--config',
        default=DEFAULT_CONFIG,
        help='a MaskCLIP config (default: MaskCLIP w/o RMA; a CLIP-baseline '
        'config for the paper\'s baseline; mmmaskclip:: names one of ours)')
    parser.add_argument(
        '--clip-weights',
        default=None,
        help='CLIP weights: local file, open_clip tag or URL (overrides config)')
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='random CLIP weights: runs offline, predictions are meaningless')
    parser.add_argument(
        '--out',
        default='outputs/mask_classification.png',
        help='where to write the picture (a folder: <image name>_labelled.png in it)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtype',
        choices=('float32', 'float16', 'bfloat16'),
        default='float32',
        help='mixed precision (torch.autocast) for the model; bfloat16 on recent GPUs and CPUs')
    parser.add_argument('--score-thr', type=float, default=0.0)
    parser.add_argument(
        '--font',
        default=None,
        help='a TrueType/OpenType font file for the drawn names (e.g. Noto Sans CJK for '
        'Chinese or Japanese names)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='config overrides, key=value (as in mmdet tools)')
    return parser.parse_args(argv)


def output_file(out: str, image: str) -> str:
    """The picture's file: ``--out``, or ``<image name>_labelled.png`` in it
    when it names a folder; one sentence for a name OpenCV cannot write."""
    import cv2

    from mmmaskclip.utils import InvalidInputError
    if out.endswith(('/', os.sep)) or osp.isdir(out):
        out = osp.join(out, osp.splitext(osp.basename(image))[0] + '_labelled.png')
    elif not osp.splitext(out)[1]:
        raise InvalidInputError(f'--out {out} has no file extension: name a picture such as '
                                f'{out}.png, or a folder (ending in /).')
    if not cv2.haveImageWriter(out):
        raise InvalidInputError(f'--out {out}: OpenCV cannot write {osp.splitext(out)[1]} '
                                'files; name a .png or .jpg file.')
    return out


def classify(args) -> int:
    """Classify and draw; bad input raises one sentence, checked before the
    model is built where it can be."""
    import warnings

    from mmmaskclip.apis import (check_class_names, classify_masks, draw_mask_classification,
                                 init_mask_classifier, load_image, load_masks)
    from mmmaskclip.apis.drawing import check_font, score_text
    from mmmaskclip.apis.visualization import nothing_drawn_message
    from mmmaskclip.utils import InputWarning
    out = output_file(args.out, args.image)
    check_font(args.font)
    vocab = check_class_names(args.vocab)
    image = load_image(args.image)
    with warnings.catch_warnings():  # checked here, warned once by classify_masks
        warnings.simplefilter('ignore', InputWarning)
        masks = load_masks(args.masks, args.mask_type)
    options = dict(args.cfg_options)
    if args.clip_weights:
        options['model.clip.pretrained'] = args.clip_weights
    if args.random_weights:
        options['model.clip.pretrained'] = None
    model = init_mask_classifier(args.config, device=args.device, cfg_options=options)
    # the files again: classify_masks names them in its warnings
    result = classify_masks(
        model, args.image, args.masks, vocab, dtype=args.dtype, mask_type=args.mask_type)
    width = max(len(n) for n in result.class_names)
    for i, (name, score) in enumerate(zip(result.names(), result.scores)):
        print(f'mask {i:3d}: {name:<{width}}  {score_text(score)}')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    draw_mask_classification(
        image, masks, result, out_file=out, score_thr=args.score_thr, font_path=args.font)
    message = nothing_drawn_message(masks, result, args.score_thr)
    if message:
        print(f'nothing drawn: {message}')
    print(f'wrote {out}')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmmaskclip.utils import run_cli
    return run_cli(osp.basename(__file__), lambda: classify(args))


if __name__ == '__main__':
    sys.exit(main())

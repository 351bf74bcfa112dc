# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Segment images, folders, videos or a webcam for any vocabulary and draw the
results (class-agnostic proposals -> MaskCLIP -> panoptic / semantic / instance).

Examples::

    # training-free MaskCLIP w/o RMA (OpenAI CLIP + model-zoo Mask2Former)
    python tools/demo/demo.py demo/scene.png --texts house tree --stuff-texts sky grass
    # a preset vocabulary plus your names, all three results side by side
    python tools/demo/demo.py photos/ --vocab ade20k --texts "toy rabbit" --task all
    # a video, with the masks saved (COCO RLE / panoptic PNG / label PNG per frame)
    python tools/demo/demo.py clip.mp4 --vocab coco --save-masks --batch-size 4
    # a trained MaskCLIP
    python tools/demo/demo.py IMG --texts rabbit --config CFG --weights CKPT
    mim run mmmaskclip demo demo/scene.png --texts house --random-weights
    # names in Chinese (or Japanese, Korean): a font with their glyphs
    python tools/demo/demo.py IMG --texts 房子 树 \
        --font /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

Drawings go to ``OUT_DIR/vis/`` (a video to ``OUT_DIR/vis/<name>.mp4``),
saved masks to ``OUT_DIR/preds/``; instance scores read ``name: 74.3%``, and
a drawing that shows nothing says why on it (and here, in the summary).
``--random-weights`` runs offline with random CLIP and proposer weights: the
pipeline runs, the labels are meaningless.
"""
import argparse
import logging
import os.path as osp
import sys
import warnings

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'maskclip',
                          'maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py')
TASKS = ('panoptic', 'semantic', 'instance')
#: Warnings of the libraries underneath that a normal run would print.
QUIET = (
    (UserWarning, r'.*pkg_resources is deprecated.*'),
    (UserWarning, r'.*The "FileClient" will be deprecated.*'),
    (UserWarning, r'.*"HardDiskBackend" is the alias.*'),
    (UserWarning, r'.*get_instance.*should not accept any other arguments.*'),
    (UserWarning, r'.*Failed to search registry with scope.*'),
    (UserWarning, r'.*Failed to add .*LocalVisBackend.*'),
    (UserWarning, r'.*torch.meshgrid: in an upcoming release.*'),
    (UserWarning, r'.*is out of bounds, the drawn .* may not be in the image.*'),
    (FutureWarning, r'.*'),
    (DeprecationWarning, r'.*'),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'inputs', help='an image, a folder of images, a video file, or a webcam index (0)')
    parser.add_argument(
        '--vocab',
        nargs='*',
        default=[],
        help='vocabulary presets (coco, coco-stuff, ade20k, ade20k-full, pascal-context-59, '
        'pascal-context-459, lvis) and/or files of names (one a line, "name: stuff" for '
        'stuff; or JSON {"things": [...], "stuff": [...]})')
    parser.add_argument(
        '--texts', nargs='*', default=[], help='thing names (a comma inside joins synonyms)')
    parser.add_argument(
        '--stuff-texts', nargs='*', default=[], help='stuff names (one segment per class)')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='MaskCLIP config')
    parser.add_argument(
        '--weights', default=None, help='MaskCLIP checkpoint (none for training-free configs)')
    parser.add_argument(
        '--task',
        choices=TASKS + ('all', ),
        default='panoptic',
        help='what to draw; all: the three side by side')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--device', default=None, help='e.g. cpu, cuda:0 (default: picks one)')
    parser.add_argument('--batch-size', type=int, default=1, help='images or frames per pass')
    parser.add_argument(
        '--dtype',
        choices=('float32', 'float16', 'bfloat16'),
        default='float32',
        help='mixed precision (torch.autocast) for the model')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='instances scoring below are not drawn')
    parser.add_argument(
        '--save-masks',
        action='store_true',
        help='also write OUT_DIR/preds/<name>.json (RLE instances, panoptic segments), '
        '<name>_panoptic.png and <name>_semantic.png')
    parser.add_argument(
        '--void-pixels',
        action='store_true',
        help='semantic: leave pixels unlabelled where the void class wins (small vocabularies)')
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='random CLIP and proposer weights: runs offline, predictions are meaningless')
    parser.add_argument(
        '--font',
        default=None,
        help='a font file for the drawn names, for scripts the default font lacks (CJK, ...), '
        'e.g. /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc (apt-get install '
        'fonts-noto-cjk)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def quiet_libraries() -> None:
    """Hide the known warnings of mmengine, mmdet, torch and setuptools."""
    for category, message in QUIET:
        warnings.filterwarnings('ignore', message=message, category=category)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('ERROR')
    # open_clip's note on random weights (--random-weights says it already)
    logging.getLogger().addFilter(lambda record: 'No pretrained weights' not in record.getMessage())


def build_inferencer(args):
    """The inferencer of ``args`` (config, weights, task, device)."""
    from mmmaskclip.apis import MaskCLIPInferencer, inference_config
    cfg = inference_config(args.config, args.cfg_options, args.random_weights,
                           TASKS if args.task == 'all' else (args.task, ),
                           255 if args.void_pixels else None)
    return MaskCLIPInferencer(
        cfg, weights=args.weights, device=args.device, dtype=args.dtype, font_path=args.font)


def run_webcam(inferencer, index: int, vocabulary, tasks, args) -> int:
    """Segment camera frames (BGR, the inferencer's default channel order)
    until the window gets 'q' or Esc."""
    import cv2

    from mmmaskclip.utils import InvalidInputError
    camera = cv2.VideoCapture(index)
    if not camera.isOpened():
        raise InvalidInputError(f'could not open camera {index}: give the index of a connected '
                                'camera, or an image, folder or video.')
    try:
        while True:
            ok, frame = camera.read()
            if not ok:
                break
            out = inferencer(
                frame,
                texts=list(vocabulary.things),
                stuff_texts=list(vocabulary.stuff),
                tasks=tasks,
                return_vis=True,
                no_save_vis=True,
                pred_score_thr=args.score_thr)
            cv2.imshow('mmmaskclip', out['visualization'][0][..., ::-1])
            if cv2.waitKey(1) & 0xFF in (ord('q'), 27):
                break
    finally:
        camera.release()
        cv2.destroyAllWindows()
    return 0


def check_arguments(args):
    """The vocabulary of ``args``; bad arguments raise one sentence (before
    any model is built)."""
    from mmmaskclip.apis import build_vocabulary
    from mmmaskclip.apis.drawing import check_font
    from mmmaskclip.utils import InvalidInputError, MissingInputError
    try:
        vocabulary = build_vocabulary(args.vocab, args.texts, args.stuff_texts)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise InvalidInputError(f'{err} (use --vocab, --texts and/or --stuff-texts)') from err
    if not args.inputs.isdigit() and not osp.exists(args.inputs):
        raise MissingInputError(f'input {args.inputs} does not exist: give an image, a folder, '
                                'a video or a webcam index.')
    if osp.exists(args.out_dir) and not osp.isdir(args.out_dir):
        raise InvalidInputError(f'--out-dir {args.out_dir} is a file: give a folder (created '
                                'if missing).')
    check_font(args.font)
    return vocabulary


def print_empty_drawings(notes, limit: int = 5) -> None:
    """Print the drawings that show nothing (``'<image>: <why>'``), the
    first ``limit`` of them and how many more."""
    for note in notes[:limit]:
        print(f'nothing drawn on {note}')
    if len(notes) > limit:
        print(f'... and on {len(notes) - limit} more drawing(s)')


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    import mmmaskclip  # noqa: F401
    from mmmaskclip.utils import run_cli
    return run_cli(osp.basename(__file__), lambda: segment(args))


def segment(args) -> int:
    """Segment the inputs of ``args``; bad input raises one sentence."""
    from mmmaskclip.utils import InvalidInputError
    vocabulary = check_arguments(args)
    inferencer = build_inferencer(args)
    tasks = TASKS if args.task == 'all' else None
    if args.inputs.isdigit():
        return run_webcam(inferencer, int(args.inputs), vocabulary, tasks, args)
    out = inferencer(
        args.inputs,
        texts=list(vocabulary.things),
        stuff_texts=list(vocabulary.stuff),
        tasks=tasks,
        batch_size=args.batch_size,
        out_dir=args.out_dir,
        no_save_pred=not args.save_masks,
        pred_score_thr=args.score_thr,
        return_datasamples=not args.save_masks)
    if not out['predictions']:
        raise InvalidInputError(f'no image of {args.inputs} could be read (see the warnings '
                                'above): give PNG or JPEG files.')
    print_empty_drawings(inferencer.empty_drawings)
    where = out.get('video') or osp.join(args.out_dir, 'vis')
    saved = f", masks in {osp.join(args.out_dir, 'preds')}" if args.save_masks else ''
    print(f"segmented {len(out['predictions'])} image(s) for {len(vocabulary.names)} classes; "
          f'drawings in {where}{saved}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Wall time and peak memory of plain CLIP, the CLIP baseline and MaskCLIP, side by side.

Encoders (default): plain CLIP's image forward (open_clip ``encode_image``),
the CLIP baseline (``M`` masked images through CLIP), MaskCLIP w/o RMA and
MaskCLIP with official- and paper-style Relative Mask Attention, all on one
CLIP with random weights (weights do not change the cost), one image and
``M`` random masks, for each ``--num-masks`` and ``--dtypes``. The encoder
settings come from the shipped model configs
(``configs/_base_/models/*_vit-l-14-336.py``); their RMA blocks (6/12/18/24
of ViT-L's 24, 1-based) scale to the depth of another CLIP (ViT-B: 3/6/9/12).

End to end (``--config``): images/s of a full MaskCLIP config through the
model's ``test_step`` (preprocessing, proposer, encoder, classification,
post-processing) on a random image of the config's test size; the text
embeddings of the vocabulary are computed once before timing.

Outputs in ``--out-dir``: ``benchmark.json`` (settings, machine, every raw
time), ``benchmark.md`` (tables, ratios to plain CLIP of the same run) and
``benchmark.png`` (time and memory against M).

Examples::

    # the README's Speed table (the CLIP baseline makes M CLIP passes: on a
    # CPU leave it out with --variants, or expect minutes per run)
    python tools/analysis_tools/benchmark.py --model ViT-L-14-336 --input-size 336 \
        --num-masks 100
    # a quick check at ViT-B/16
    python tools/analysis_tools/benchmark.py --model ViT-B-16 --input-size 224 \
        --num-masks 10 50 100 --repeats 2
    # a mask-count sweep, float32 against bfloat16, on a GPU
    python tools/analysis_tools/benchmark.py --model ViT-L-14-336 --input-size 336 \
        --num-masks 10 50 100 200 --dtypes float32 bfloat16 --device cuda --repeats 10
    # peak memory of the inferencer on a 4000x3000 photo (drawings and masks
    # at full size; object_mask_thr=0 makes every proposal compete)
    python tools/analysis_tools/benchmark.py --config \
        configs/maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py \
        --random-weights --device cpu --inferencer --image-size 3000 4000 --repeats 1 \
        --warmup 0 --cfg-options model.post_processor.object_mask_thr=0
    # end to end, images/s (random CLIP and proposer weights, offline)
    python tools/analysis_tools/benchmark.py --config \
        configs/maskclip/maskclip_vit-l-14-336_ade20k-150-panoptic.py \
        --random-weights --device cuda --dtypes float32 bfloat16 --e2e-images 20
"""
import argparse
import importlib.util
import json
import logging
import os
import os.path as osp
import sys
import warnings
from typing import Dict, List

# Notes of the libraries underneath that say nothing about the benchmark.
warnings.filterwarnings('ignore', message='.*pkg_resources is deprecated.*')
sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from benchmark_tasks import DTYPES, VARIANTS, encoder_tasks, end_to_end_tasks, run_interleaved
from benchmark_utils import (TIMING_NOTE, BenchmarkInputError, MemoryProbe, load_average,
                             machine_info, markdown, plot, summarize_encoders, summarize_end_to_end)
from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Examples: see the top of this file.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--model', default='ViT-B-16', help='open_clip model name (encoders)')
    parser.add_argument(
        '--clip-cfg',
        default=None,
        help='open_clip.CLIP keyword arguments (a JSON string or .json file) instead of '
        '--model, e.g. a tiny CLIP')
    parser.add_argument(
        '--input-size', type=int, default=None, help='square image size (default: the CLIP\'s)')
    parser.add_argument('--num-masks', type=int, nargs='+', default=[100], help='values of M')
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=VARIANTS,
        default=list(VARIANTS),
        help='encoders to time (plain-clip is always timed: the ratios refer to it)')
    parser.add_argument(
        '--rma-blocks',
        type=int,
        nargs='+',
        default=None,
        help='1-based RMA blocks (default: the shipped ones scaled to the CLIP depth)')
    parser.add_argument('--config', nargs='+', default=[], help='MaskCLIP configs, end to end')
    parser.add_argument(
        '--mode',
        choices=('encoders', 'end-to-end', 'both'),
        default=None,
        help='default: end-to-end with --config, else encoders')
    parser.add_argument(
        '--image-size',
        type=int,
        nargs='+',
        default=None,
        help='end-to-end image H [W] (default: square at the short side of the test Resize)')
    parser.add_argument(
        '--vocab',
        nargs='+',
        default=None,
        help='end-to-end vocabulary: presets (ade20k, coco, lvis, ...) or files '
        '(default: the classes of the config\'s test dataset)')
    parser.add_argument(
        '--e2e-images', type=int, default=1, help='images per end-to-end measurement')
    parser.add_argument(
        '--inferencer',
        action='store_true',
        help='end to end through MaskCLIPInferencer: a photo of --image-size read from '
        'disk, resized by the config\'s pipeline, post-processed, drawn (all three tasks) and '
        'exported at its own size (outputs in OUT_DIR/inferencer)')
    parser.add_argument(
        '--random-weights',
        action='store_true',
        help='end to end: random CLIP and proposer weights (offline; the encoders are '
        'always random)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='override entries of the --config files, e.g. '
        'model.post_processor.object_mask_thr=0.5')
    parser.add_argument('--dtypes', nargs='+', choices=DTYPES, default=['float32'])
    parser.add_argument('--device', default=None, help='cpu or cuda[:i] (default: cuda if any)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--repeats', type=int, default=3, help='interleaved timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per measurement')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Raise BenchmarkInputError with one sentence for a bad command line."""
    if args.mode is None:
        args.mode = 'end-to-end' if args.config else 'encoders'
    if args.mode != 'encoders' and not args.config:
        raise BenchmarkInputError(f'--mode {args.mode} needs --config (a MaskCLIP config file).')
    for path in args.config:
        if not osp.isfile(path):
            raise BenchmarkInputError(f'config file not found: {path}')
    if min(args.num_masks) < 1 or args.repeats < 1 or args.warmup < 0 or args.e2e_images < 1:
        raise BenchmarkInputError('--num-masks, --repeats and --e2e-images must be >= 1 and '
                                  '--warmup >= 0.')
    if args.image_size is not None and len(args.image_size) not in (1, 2):
        raise BenchmarkInputError(f'--image-size takes H or H W, got {args.image_size}.')
    if args.threads is not None and args.threads < 1:
        raise BenchmarkInputError(f'--threads must be >= 1, got {args.threads}.')
    if args.device is not None and args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise BenchmarkInputError(f'--device {args.device}: this machine has no CUDA device.')
    args.num_masks = sorted(set(args.num_masks))


# ---------------------------------------------------------------- main
def write_outputs(result: dict, out_dir: str) -> Dict[str, str]:
    """``benchmark.json``, ``benchmark.md`` and (encoders) ``benchmark.png``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: osp.join(out_dir, f'benchmark.{ext}') for ext in ('json', 'md', 'png')}
    with open(paths['json'], 'w') as f:
        json.dump(result, f, indent=1)
    with open(paths['md'], 'w') as f:
        f.write(markdown(result))
    if result.get('encoders'):
        plot(result, paths['png'])
    else:
        paths.pop('png')
    return paths


def strip(tasks: List[dict]) -> List[dict]:
    """The tasks without their callables and models (JSON-ready)."""
    return [{k: v for k, v in t.items() if not callable(v)} for t in tasks]


def import_mmmaskclip() -> None:
    """Import mmmaskclip, from this checkout if it is not installed (see
    ``tools/tool_common.py``, loaded from its file: ``tools/`` holds scripts
    named like modules, so it does not go on ``sys.path``)."""
    path = osp.join(osp.dirname(osp.dirname(osp.realpath(__file__))), 'tool_common.py')
    spec = importlib.util.spec_from_file_location('_mmmaskclip_tool_common', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_mmmaskclip(__file__)


def run(args) -> dict:
    """Every measurement of ``args``; the result as written to JSON."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    torch.manual_seed(args.seed)
    probe = MemoryProbe(device)
    result = dict(
        settings=vars(args),
        machine=machine_info(device),
        timing_note=TIMING_NOTE.format(warmup=args.warmup, repeats=args.repeats),
        memory_note=probe.note)
    if args.mode in ('encoders', 'both'):
        tasks, result['encoder_settings'] = encoder_tasks(args, device)
        run_interleaved(tasks, args.repeats, args.warmup, probe)
        result['encoders'] = strip(tasks)
        summarize_encoders(result['encoders'])
    if args.mode in ('end-to-end', 'both'):
        tasks = end_to_end_tasks(args, device)
        run_interleaved(tasks, args.repeats, args.warmup, probe)
        result['end_to_end'] = strip(tasks)
        summarize_end_to_end(result['end_to_end'])
        result['end_to_end_note'] = (
            ('Through MaskCLIPInferencer: reading the photo, the config\'s pipeline, the model, '
             'post-processing at the photo\'s size, drawing the three tasks and exporting the '
             'masks. ' if args.inferencer else '') +
            f'One {args.e2e_images}-image measurement per round at batch size 1; images/s = '
            'images / total seconds of the timed runs (as Mask2Former reports FPS). The '
            'vocabulary\'s text embeddings are computed once before timing (the text '
            'encoder\'s cache; that one-off is the last column). ' +
            ('Random CLIP and proposer weights: the cost of post-processing depends on how '
             'many segments pass its thresholds, which random weights do not make realistic.'
             if args.random_weights else 'Weights as the config names them.'))
    result['machine']['load_average_end'] = load_average()
    return result


def no_random_weights_note(record: logging.LogRecord) -> bool:
    """Logging filter: drop open_clip's note on random weights (random
    weights are what the benchmark uses; its output says so)."""
    return 'No pretrained weights' not in record.getMessage()


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.getLogger().addFilter(no_random_weights_note)
    try:
        check_args(args)
        import_mmmaskclip()
        from mmmaskclip.models import CLIPWeightsNotFoundError
        from mmmaskclip.models.proposers import ProposerWeightsNotFoundError
        try:
            result = run(args)
        except (CLIPWeightsNotFoundError, ProposerWeightsNotFoundError) as err:
            raise BenchmarkInputError(
                f'{err} (or benchmark offline with --random-weights)') from err
    except BenchmarkInputError as err:
        print(f'benchmark.py: error: {err}', file=sys.stderr)
        return 2
    paths = write_outputs(result, args.out_dir)
    print(markdown(result))
    print('wrote ' + ', '.join(paths.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())

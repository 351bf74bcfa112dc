# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Train a model from an mmmaskclip (or mmdet) config with mmengine's Runner.

Examples::

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
    python tools/train.py CONFIG --resume             # latest in work_dir
    python tools/train.py CONFIG --resume CHECKPOINT  # that checkpoint
    python tools/train.py CONFIG --cfg-options train_cfg.max_iters=10
    python tools/train.py CONFIG --random-weights --seed 0  # offline: random CLIP, proposer
    mim train mmmaskclip CONFIG
    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch

Put ``--resume`` after the config: without a value it would take the config
path as the checkpoint.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional

# setuptools' deprecation notice, printed by mmengine's and mmcv's imports on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

# Only light imports here: ``--help`` and argument errors stay fast (mim
# runs ``train.py -h`` before every training). torch, mmdet and mmmaskclip
# are imported by ``main``.
from mmengine.config import Config

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from tool_common import (ToolError, add_common_args, build_runner, load_cfg, merge_common_args,
                         prepare, run_reported)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv (list[str], optional): Arguments without the program name.
            Defaults to None (``sys.argv[1:]``).

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(description='Train a model with an mmmaskclip config.')
    parser.add_argument('config', help='path of the training config')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision training: use AmpOptimWrapper with a dynamic '
        'loss scale')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual over the config\'s '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume training: from CHECKPOINT if given, otherwise from the '
        'latest checkpoint in the work directory')
    add_common_args(parser, 'train_cfg.max_iters=100 model.clip.pretrained=None')
    return parser.parse_args(argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to a loaded config, in place.

    Args:
        cfg (Config): The config loaded from ``args.config``.
        args (argparse.Namespace): The output of :func:`parse_args`.

    Returns:
        Config: ``cfg``, updated.

    Raises:
        ToolError: If an option cannot apply to this config.
    """
    merge_common_args(cfg, args)

    if args.amp:
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            raise ToolError('--amp needs an optim_wrapper in the config')
        if optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            from mmengine.logging import print_log
            print_log('The config already uses AmpOptimWrapper; --amp keeps it '
                      'as it is.',
                      logger='current')
        else:
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr', None)
        if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
            raise ToolError('--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                            'base_batch_size=...) in the config')
        auto_scale_lr.enable = True

    # An explicit checkpoint takes precedence over the automatic search.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):
            raise ToolError(f'checkpoint to resume from not found: '
                            f'{args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def build_cfg(args: argparse.Namespace) -> Config:
    """Load ``args.config`` and apply the command-line options.

    Args:
        args (argparse.Namespace): The output of :func:`parse_args`.

    Returns:
        Config: The config to build the runner from.

    Raises:
        ToolError: If the config file does not exist or an option cannot
            apply to it.
    """
    return load_cfg(args, merge_args)


def main(argv: Optional[List[str]] = None) -> int:
    """Train from the command line.

    Args:
        argv (list[str], optional): Arguments without the program name.
            Defaults to None (``sys.argv[1:]``).

    Returns:
        int: The exit status.
    """
    args = parse_args(argv)
    cfg = prepare(args, __file__, [('config', args.config)], merge_args)
    if isinstance(cfg, int):
        return cfg
    return run_reported(__file__, lambda: run_train(cfg), cfg)


def run_train(cfg: Config) -> int:
    """Build the runner and train.

    Returns:
        int: The exit status.
    """
    build_runner(cfg).train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
